"""`synthaug augment`: classic augmentation of the train split into a packed data set."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import (ParamsOpt, SetOpt, guard_output, params_from,
                                    params_unchanged, say, user_errors)


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bar (on a terminal)")] = True) -> None:
    """Write `augment.copies_per_image` augmented copies of every training image.

    `augment.pipeline` is a preset (light, medium, heavy, randaugment, trivialaugment,
    autoaugment, augmix) or a list of albumentations steps such as
    `{transform: Affine, rotate: [-10, 10], p: 0.8}`; it is checked before any work. Work is
    spread over `augment.workers` processes (0 = all cores); the output is byte-identical for
    any number of workers. Writes `paths.augmented` (images.npy, labels.npy, manifest.csv with
    the parent image, copy number and seed of every image, meta.json with the resolved
    pipeline) and preview.png (originals next to their copies) atomically.

    **Examples**

    ```
    synthaug augment
    synthaug augment -S augment.pipeline=heavy -S augment.copies_per_image=8
    ```
    """
    p = params_from(params, set_)
    cfg = p.augment
    out = guard_output(p, "augmented")
    from synthaug.pipeline.augment.classic import build_augmenter
    from synthaug.pipeline.augment.expand import expand, preview_pick
    from synthaug.pipeline.core.pool import usable_cores
    from synthaug.pipeline.figures.data import augment_grid
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.data.storage import read_dataset, write_dataset

    train = read_dataset(p.paths.prepared / "train", mmap=False, manifest=True)
    described = build_augmenter(cfg.pipeline, train.shape).describe()
    workers = cfg.workers or usable_cores()
    name = cfg.pipeline if isinstance(cfg.pipeline, str) else "custom"
    say(f"augment: {len(train)} training images x {cfg.copies_per_image} copies with "
        f"{name} on {workers} process(es)")
    import time

    start = time.perf_counter()
    ex = expand(train.images, train.labels, cfg.pipeline, cfg.copies_per_image, cfg.seed,
                workers=workers, progress=progress)
    seconds = time.perf_counter() - start
    parent_origin = [row.get("origin", "") for row in train.manifest]
    provenance = [{"origin": "augment", "augment": name, "parent": int(par),
                   "parent_origin": parent_origin[par], "copy": int(k), "seed": int(s)}
                  for par, k, s in zip(ex.parents, ex.copies, ex.seeds)]
    with atomic_output(out) as tmp:
        write_dataset(tmp, ex.images, ex.labels, train.class_names, provenance, {
            "source": train.meta.get("source"), "kind": "augmented",
            "parent_content_hash": train.meta.get("content_hash"),
            "augment": {**described, "copies_per_image": cfg.copies_per_image, "seed": cfg.seed}})
        k = len(train.class_names)
        picks = preview_pick(train.labels, 2 if k <= 10 else 1)[:20]
        shown = min(cfg.copies_per_image, 8)
        copies = ex.images.reshape(len(train), cfg.copies_per_image, *ex.images.shape[1:])
        augment_grid(train.images[picks], copies[picks, :shown],
                     [train.class_names[train.labels[i]] for i in picks], tmp / "preview.png",
                     title=f"augment: {name}, originals (framed) and copies")
        params_unchanged()  # params.yaml edited meanwhile: not committed
    say(f"wrote {len(ex.labels)} images in {seconds:.1f} s ({len(ex.labels) / seconds:,.0f} img/s) "
        f"-> {p.paths.augmented}")
