"""`synthaug compose`: the training set of every study variant, as packed data sets."""
from __future__ import annotations

from pathlib import Path

from stages.common import ParamsOpt, SetOpt, params_from, say, user_errors


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Build each variant named in `study.variants` as defined under `compose.variants`.

    A variant lists its parts (`real`: paths.prepared/train; `classic`: paths.augmented) and
    may ask for on-the-fly augmentation (`online_augment`), which the train stage applies.
    Writes paths.variants/<variant>/ (images.npy, labels.npy, manifest.csv naming the part and
    provenance of every image, meta.json with the make-up) atomically, and prints the make-up.
    """
    from pipeline.compose import compose_variant, makeup_table
    from pipeline.storage import atomic_output, read_dataset, write_dataset

    p = params_from(params, set_)
    wanted = {name: p.compose.variants[name] for name in p.study.variants}
    needed = {part for v in wanted.values() for part in v.parts}
    where = {"real": p.paths.prepared / "train", "classic": p.paths.augmented}
    parts = {part: read_dataset(where[part], mmap=False, manifest=True)
             for part in sorted(needed | {"real"})}
    variants = {name: compose_variant(name, cfg, parts) for name, cfg in wanted.items()}
    with atomic_output(p.paths.variants) as tmp:
        for name, v in variants.items():
            (tmp / name).mkdir()
            write_dataset(tmp / name, v.images, v.labels, v.class_names, v.provenance, v.meta)
    say(f"composed {len(variants)} variant(s) -> {p.paths.variants}")
    say(makeup_table(variants))
