"""`synthaug sample [SET...]`: labelled synthetic sets drawn from the trained generators."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import (ParamsOpt, SetOpt, params_from, params_unchanged, say,
                                    user_errors)


@user_errors
def command(sets: Annotated[list[str] | None, typer.Argument(
                help="set names under sample.sets [default: all]", metavar="SET",
                show_default=False)] = None,
            params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Draw each synthetic set named under `sample.sets` from its trained generator.

    A set is a generator (`gan`, `vae`, `diffusion`, from paths.generators) and a sampler:
    prior, truncated (psi), slerp, posterior_jitter (vae, sigma), gmm (vae, components) or
    img2img (diffusion, strength). Each set has `sample.per_class` images per class (or its own
    `per_class`), seeded by `sample.seed` and the set's name.

    `generator: pretrained` draws from the diffusers pipeline `sample.pretrained.model` (a
    local folder, or a Hub id: fetched only with `sample.pretrained.download: true`), nothing
    to train: prior is text-to-image from the class prompts, img2img starts from each real
    training image (its `parent`), on `sample.device`. A killed run continues after its last
    finished batch (kept under paths.checkpoints/sample/SET).

    Writes paths.synthetic/SET/ atomically: the packed set (images.npy, labels.npy,
    manifest.csv with generator, sampler, settings, seed and parent real image per image,
    meta.json), grid.png (one row per class), walk.png (per class, how the sampler moves:
    a prior slerp; posterior_jitter: between two real images' latents; img2img: a real image
    at rising strength) and
    interpolation.png (interpolation strips between two latents of one class; their ends are
    the two latents' own images).

    **Examples**

    ```
    synthaug sample
    synthaug sample vae-prior -S sample.per_class=500
    synthaug sample sd-img2img -S sample.pretrained.model=/models/sd-turbo
    ```
    """
    p = params_from(params, set_)
    from synthaug.pipeline.core.errors import SynthaugError

    names = list(sets or p.sample.sets)
    for name in names:
        if name not in p.sample.sets:
            raise SynthaugError(f"sample: unknown set {name!r}; defined under sample.sets: "
                                f"{', '.join(p.sample.sets) or 'none'}")
    from synthaug.generators.config import PRETRAINED
    from synthaug.generators.pretrained import Pretrained
    from synthaug.generators.sets import draw, load_for, set_seed, write
    from synthaug.pipeline.core.device import pick_device
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.data.storage import read_dataset

    train = read_dataset(p.paths.prepared / "train", mmap=False)
    device = pick_device(p.sample.device)
    pretrained = Pretrained(p.sample.pretrained, device)  # loaded by its first set
    if any(p.sample.sets[n].generator == PRETRAINED for n in names):
        pretrained.check()  # not loadable as allowed: one line before any set is drawn
    for name in names:
        cfg = p.sample.sets[name]
        per_class, seed = cfg.per_class or p.sample.per_class, set_seed(p.sample.seed, name)
        work = p.paths.checkpoints / "sample" / name  # a pretrained set's resume state
        if cfg.generator == PRETRAINED:
            drawn = pretrained.draw(name, cfg, train, seed, per_class, work,
                                    log=lambda line, n=name: say(f"sample {n}: {line}"))
            gconfig = pretrained.record(train)
        else:
            model, gconfig = load_for(p.paths.generators / cfg.generator, name, cfg, train,
                                      device, p.paths.prepared / "train")
            drawn = draw(model, name, cfg, train, seed, per_class, p.sample.batch_size)
        with atomic_output(p.paths.synthetic / name) as tmp:
            write(tmp, drawn, train, gconfig, p.sample.walk_steps)
            params_unchanged()  # params.yaml edited meanwhile: not committed
        if cfg.generator == PRETRAINED:
            pretrained.close(work)
        say(f"sample {name}: {len(drawn.images)} images ({per_class} per class) from "
            f"{cfg.generator} with the {cfg.sampler} sampler in {drawn.seconds:.1f} s -> "
            f"{p.paths.synthetic / name}")
