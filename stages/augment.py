"""`synthaug augment`: classic augmentation of the train split into a packed data set."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import (ParamsOpt, SetOpt, guard_output, params_from,
                                    params_unchanged, say, user_errors)


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bar (on a terminal)")] = True) -> None:
    """Write `augment.copies_per_image` augmented copies of every training image.

    `augment.pipeline` is `auto` (the default), a preset (light, medium, heavy, randaugment,
    trivialaugment, autoaugment, augmix) or a list of albumentations steps such as
    `{transform: Affine, rotate: [-10, 10], p: 0.8}`; it is checked before any work. `auto`
    chooses among `augment.candidates` (presets, and `none`: no augmentation) on the VAL
    split: `augment.choose_model` trains on the real images plus each candidate's copies
    (seeds `augment.choose_seeds`, the study's recipe) and the best mean val accuracy wins
    (pipeline/experiments/classic_choice.py; the test split is not read). Work is spread over
    `augment.workers` processes (0 = all cores); the output is byte-identical for any number
    of workers. Writes `paths.augmented` (images.npy, labels.npy, manifest.csv with the
    parent image, copy number and seed of every image, meta.json with the resolved pipeline;
    with auto, choice.json: the choice and every candidate's val scores) and preview.png
    (originals next to their copies) atomically.

    **Examples**

    ```
    synthaug augment
    synthaug augment -S augment.pipeline=heavy -S augment.copies_per_image=8
    synthaug augment -S 'augment.candidates=[none, light, randaugment]'
    ```
    """
    p = params_from(params, set_)
    cfg = p.augment
    out = guard_output(p, "augmented")
    from synthaug.pipeline.augment.classic import build_augmenter
    from synthaug.pipeline.augment.config import AUTO, NO_AUGMENT
    from synthaug.pipeline.augment.expand import preview_pick
    from synthaug.pipeline.core.pool import usable_cores
    from synthaug.pipeline.experiments.classic_choice import RECORD, choose, classic_copies
    from synthaug.pipeline.figures.data import augment_grid
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.data.storage import read_dataset, write_dataset

    train = read_dataset(p.paths.prepared / "train", mmap=False, manifest=True)
    spec, choice = cfg.pipeline, None
    for candidate in (cfg.candidates if spec == AUTO else [spec]):  # every spec, before work
        if candidate != NO_AUGMENT:
            build_augmenter(candidate, train.shape)
    if spec == AUTO:  # chosen on the val split (never test)
        from synthaug.pipeline.core.device import pick_device

        val = read_dataset(p.paths.prepared / "val", mmap=False)
        say(f"augment: choosing among {', '.join(cfg.candidates)} on {len(val)} val images")
        choice = choose(train, val, cfg, p.train, p.models, pick_device(p.train.device),
                        cfg.workers, log=say)
        spec = choice.chosen
        say(f"augment: chose {spec} (mean val accuracy "
            + ", ".join(f"{c.name} {c.mean:.4f}" for c in choice.candidates) + ")")
    described = ({"spec": NO_AUGMENT, "resolved": []} if spec == NO_AUGMENT
                 else build_augmenter(spec, train.shape).describe())
    workers = cfg.workers or usable_cores()
    name = spec if isinstance(spec, str) else "custom"
    say(f"augment: {len(train)} training images x {cfg.copies_per_image} copies with "
        f"{name} on {workers} process(es)")
    import time

    start = time.perf_counter()
    ex = classic_copies(train.images, train.labels, spec, cfg.copies_per_image, cfg.seed,
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
            "augment": {**described, "copies_per_image": cfg.copies_per_image, "seed": cfg.seed,
                        "choice": choice and choice.record()}})
        if choice is not None:
            (tmp / RECORD).write_text(json.dumps(choice.record(), indent=1) + "\n")
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
