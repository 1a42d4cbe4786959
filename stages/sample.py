"""`synthaug sample [SET...]`: labelled synthetic sets drawn from the trained generators."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOpt, SetOpt, params_from, say, user_errors


def set_seed(seed: int, name: str) -> int:
    """Each set's own seed: two sets of one generator draw different images."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


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

    Writes paths.synthetic/SET/ atomically: the packed set (images.npy, labels.npy,
    manifest.csv with generator, sampler, settings, seed and parent real image per image,
    meta.json), grid.png (one row per class), walk.png (per class, how the sampler moves:
    a prior slerp; posterior_jitter: between two real images' latents; img2img: a real image
    at rising strength) and
    interpolation.png (interpolation strips between two latents of one class; their ends are
    the two latents' own images).
    """
    p = params_from(params, set_)
    from pipeline.core.errors import SynthaugError

    names = list(sets or p.sample.sets)
    for name in names:
        if name not in p.sample.sets:
            raise SynthaugError(f"sample: unknown set {name!r}; defined under sample.sets: "
                                f"{', '.join(p.sample.sets) or 'none'}")
    import numpy as np
    import torch

    from generators.common import load_generator
    from generators.samplers import balanced_labels, build_sampler, interpolation
    from pipeline.core.device import pick_device
    from pipeline.report.figures import interpolation_strip, sample_grid
    from pipeline.data.storage import atomic_output, read_dataset, write_dataset

    train = read_dataset(p.paths.prepared / "train", mmap=False)
    device = pick_device(p.sample.device)
    for name in names:
        cfg = p.sample.sets[name]
        folder = p.paths.generators / cfg.generator
        if not (folder / "config.json").is_file():
            raise SynthaugError(f"{folder}: no trained {cfg.generator} generator for set {name!r}; "
                                f"run `synthaug train-generator {cfg.generator}` (or `dvc repro`)")
        model, gconfig = load_generator(folder, device)
        if model.class_names != train.class_names or tuple(model.shape) != train.shape:
            raise SynthaugError(f"{folder}: trained on classes/shape {model.class_names}/"
                                f"{model.shape}, but the train split has {train.class_names}/"
                                f"{train.shape}; retrain it (`dvc repro`)")
        start = time.perf_counter()
        seed = set_seed(p.sample.seed, name)
        per_class = cfg.per_class or p.sample.per_class
        labels = balanced_labels(len(train.class_names), per_class)
        sampler = build_sampler(model, cfg).fit(train.images, train.labels)
        images, provenance = sampler.sample(labels, torch.Generator().manual_seed(seed),
                                            p.sample.batch_size)
        provenance = [{**row, "set": name, "seed": seed} for row in provenance]
        options = sampler.options  # diffusion overrides for the figures too
        steps = p.sample.walk_steps
        with atomic_output(p.paths.synthetic / name) as tmp:
            write_dataset(tmp, images, labels, train.class_names, provenance, {
                "kind": "synthetic", "set": name, "generator": cfg.generator,
                "sampler": cfg.sampler, "settings": cfg.settings(), "seed": seed,
                "generator_trained_on": gconfig.get("trained_on"),
                "source": train.meta.get("source")})
            title = f"{name}: {cfg.generator}, {cfg.sampler} sampler" + "".join(
                f", {k} {v}" for k, v in cfg.settings().items())
            sample_grid(images, labels, train.class_names, tmp / "grid.png", title=title)
            walk_rng = torch.Generator().manual_seed(seed)
            walks, walk_title = sampler.walk(walk_rng, steps)
            interpolation_strip(walks.reshape(len(train.class_names), steps, *walks.shape[1:]),
                                train.class_names, tmp / "walk.png",
                                title=f"{name}: {walk_title}")
            strips, rows = [], []
            for c in np.unique(labels)[:3]:
                z = torch.randn((2, *model.latent_shape), generator=walk_rng)
                strips.append(interpolation(model, z[0], z[1], int(c), 2 * steps, **options))
                rows.append(train.class_names[c])
            interpolation_strip(np.stack(strips), rows, tmp / "interpolation.png",
                                title=f"{cfg.generator}: interpolation strips, z1 (left) to z2 "
                                      "(right)")
        say(f"sample {name}: {len(images)} images ({per_class} per class) from {cfg.generator} "
            f"with the {cfg.sampler} sampler in {time.perf_counter() - start:.1f} s -> "
            f"{p.paths.synthetic / name}")
