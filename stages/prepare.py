"""`synthaug prepare`: source -> packed train/val/test splits under paths.prepared."""
from __future__ import annotations

from pathlib import Path

from synthaug.stages.common import (ParamsOpt, SetOpt, guard_output, params_from,
                                    params_unchanged, say, user_errors)


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Load the image source, split it and write packed train/val/test data sets.

    Reads the `prepare` and `paths` sections: prepare.source is mnist5k, digits,
    folder:PATH (one sub-folder per class) or torchvision:NAME (files under paths.raw;
    set prepare.download: true to fetch them). Images become prepare.channels x prepare.size
    x prepare.size (prepare.resize: resize, pad or center_crop). Identical images are removed
    before a seeded stratified split (prepare.val_fraction, prepare.test_fraction,
    prepare.seed); prepare.train_per_class: k keeps k training images per class and leaves
    val/test untouched (`auto`, the default: k = min(50, half the smallest class of the train
    pool), printed with its reason and recorded in meta.json). Bad image files stop the run unless prepare.on_bad_image: skip.

    Writes paths.prepared/{train,val,test} (images.npy, labels.npy, manifest.csv,
    meta.json), pool/ when prepare.train_per_class thinned the train split (the whole of it,
    which `synthaug sweep` draws its real-only sets from) and preview.png (a grid of training
    images per class) atomically: on any error nothing is written.

    **Examples**

    ```
    synthaug prepare
    synthaug prepare -S prepare.source=folder:my_images -S prepare.channels=3
    synthaug prepare -S prepare.source=digits -S prepare.train_per_class=20
    ```
    """
    from synthaug.pipeline.data.prepare import POOL, SPLITS, check_seed, counts_table, prepare_splits, split_meta
    from synthaug.pipeline.data.sources import load_source
    from synthaug.pipeline.figures.data import sample_grid
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.data.storage import write_dataset

    p = params_from(params, set_)
    cfg = p.prepare
    check_seed(cfg)  # before the images are decoded, not after
    with atomic_output(guard_output(p, "prepared")) as tmp:
        # a folder source is decoded into a memory-mapped scratch file in here: on the output's
        # disk, not in a /tmp that may be RAM-backed (its name is removed as soon as it is mapped)
        src = load_source(cfg, p.paths.raw, scratch=tmp)
        splits = prepare_splits(src, cfg)
        pool = {POOL: splits.pool} if splits.pool is not None else {}
        for name, s in {**{n: splits[n] for n in SPLITS}, **pool}.items():
            # each split is gathered from the source and written in chunks
            (tmp / name).mkdir()
            write_dataset(tmp / name, s.source, s.labels, src.class_names, s.provenance,
                          split_meta(src, cfg, splits, name), rows=s.rows)
        train = splits["train"]
        sample_grid(train.lazy_images, train.labels, src.class_names, tmp / "preview.png",
                    seed=cfg.seed, title=f"{cfg.source}: training images, one row per class")
        params_unchanged()  # params.yaml edited meanwhile: not committed
    for note in src.notes:
        say(f"note: {note}")
    if src.bad:
        say(f"skipped {len(src.bad)} bad image file(s) (listed in meta.json)")
    if splits.duplicates_removed:
        say(f"removed {splits.duplicates_removed} duplicate image(s) before splitting")
    if splits.label_conflicts:
        say(f"note: {len(splits.label_conflicts)} duplicate(s) carried a different label; "
            "kept the first (listed in meta.json)")
    if len(src.class_names) == 1:
        say(f"warning: only one class ({src.class_names[0]!r}): a classifier trained on it "
            "has nothing to tell apart; add a sub-folder per class to the source")
    say(splits.train_per_class_why)  # the k used (`auto`: chosen from the class counts) and why
    c, h, w = src.images.shape[3], src.images.shape[1], src.images.shape[2]
    say(f"{cfg.source}: {len(src.labels)} images, {len(src.class_names)} classes, "
        f"{c}x{h}x{w} -> {p.paths.prepared}")
    say(counts_table(splits, src.class_names))
