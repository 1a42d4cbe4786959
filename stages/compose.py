"""`synthaug compose`: the training set of every study variant, as packed data sets."""
from __future__ import annotations

import json
from pathlib import Path

from synthaug.stages.common import (ParamsOpt, SetOpt, guard_output, params_from,
                                    params_unchanged, say, user_errors)


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Build each variant named in `study.variants` as defined under `compose.variants`.

    A variant lists its parts (`real`: paths.prepared/train; `classic`: paths.augmented; a set
    name under `sample.sets`: paths.synthetic/<set>) and how much synthetic data it takes
    (`ratio` synthetic per real image, or `per_class`, split evenly over its synthetic parts).
    With `gate: true` its synthetic images must pass the quality gate (`compose.gate`: the
    judge's confidence in the label >= tau, no near-copies of training images); the counts kept
    and dropped per class go into the variant's meta.json. Variants may ask for on-the-fly
    augmentation (`online_augment`), which the train stage applies.

    Writes paths.variants/<variant>/ (images.npy, labels.npy, manifest.csv naming the part and
    provenance of every image, meta.json with the make-up) and paths.variants/makeup.md,
    atomically, and prints the make-up.

    **Examples**

    ```
    synthaug compose
    synthaug compose -S compose.variants.real+gan.ratio=2.0
    ```
    """
    from synthaug.pipeline.data.compose import compose_variant, makeup_table
    from synthaug.pipeline.data.config import MORE_REAL
    from synthaug.pipeline.data.prepare import more_real
    from synthaug.pipeline.core.errors import SynthaugError
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.data.lineage import check_fresh
    from synthaug.pipeline.data.storage import is_dataset, read_dataset, write_dataset

    p = params_from(params, set_)
    out = guard_output(p, "variants")
    wanted = {name: p.compose.variants[name] for name in p.study.variants}
    if any(v.online_augment == "auto" for v in wanted.values()):  # the augment stage's choice
        from synthaug.pipeline.experiments.classic_choice import chosen_pipeline, online_spec

        chosen = chosen_pipeline(p.augment, p.paths.augmented)
        wanted = {name: v.model_copy(update={"online_augment": online_spec(v.online_augment,
                                                                           chosen)})
                  for name, v in wanted.items()}
    needed = {part for v in wanted.values() for part in v.parts} | {"real"}
    where = {"real": p.paths.prepared / "train", "classic": p.paths.augmented}
    parts = {}
    for part in sorted(needed):
        if part == MORE_REAL:
            parts[part] = more_real(p.paths.prepared)
            continue
        folder = where.get(part, p.paths.synthetic / part)
        if not is_dataset(folder):
            how = ("synthaug prepare" if part == "real" else "synthaug augment"
                   if part == "classic" else f"synthaug sample {part}")
            raise SynthaugError(f"{folder}: part {part!r} is missing; run `{how}` "
                                "(or `dvc repro`) first")
        parts[part] = read_dataset(folder, mmap=False, manifest=True)
    for part in sorted(needed - {"real", MORE_REAL}):  # made from the train split as it is now
        check_fresh(where.get(part, p.paths.synthetic / part), parts[part].meta,
                    "augmented" if part == "classic" else "synthetic", where["real"],
                    parts["real"].meta["content_hash"])
    gated = sorted({s for v in wanted.values() if v.gate for s in v.synthetic_parts()})
    eligible, gate_counts = (_gate(p, {s: parts[s] for s in gated}, parts["real"])
                             if gated else ({}, {}))
    variants = {name: compose_variant(name, cfg, parts, p.compose.seed, eligible)
                for name, cfg in wanted.items()}
    table = makeup_table(variants)
    with atomic_output(out) as tmp:
        for name, v in variants.items():
            (tmp / name).mkdir()
            meta = v.meta
            if v.meta["gate"]:
                meta = {**meta, "gate_counts": {s: gate_counts[s] for s in wanted[name].synthetic_parts()},
                        "gate_settings": p.compose.gate.model_dump()}
            write_dataset(tmp / name, v.images, v.labels, v.class_names, v.provenance, meta)
        (tmp / "makeup.md").write_text(f"# Training sets\n\n{table}\n")
        if gate_counts:
            (tmp / "gate.json").write_text(json.dumps(gate_counts, indent=2) + "\n")
        params_unchanged()  # params.yaml edited meanwhile: not committed
    say(f"composed {len(variants)} variant(s) -> {p.paths.variants}")
    say(table)


def _gate(p, sets: dict, real) -> tuple[dict, dict]:
    """The quality gate over each gated set: set -> eligible mask, and set -> counts per class."""
    from synthaug.pipeline.classifiers.classifier import load_classifier
    from synthaug.pipeline.core.device import pick_device
    from synthaug.pipeline.core.errors import SynthaugError
    from synthaug.pipeline.data.lineage import check_made_from
    from synthaug.pipeline.quality.memorisation import near_copies, nearest_train, train_radius
    from synthaug.pipeline.quality.usefulness import gate

    if not (p.paths.judge / "config.json").is_file():
        raise SynthaugError(f"{p.paths.judge}: the quality gate needs the judge; run "
                            "`synthaug judge` (or `dvc repro`) first")
    device = pick_device(p.quality.device)
    judge, config = load_classifier(p.paths.judge, device)
    check_made_from(p.paths.judge, (config.get("judge") or {}).get("trained_on"),
                    p.paths.prepared / "train", real.meta["content_hash"], "`synthaug judge`")
    radius = train_radius(real.images) if p.compose.gate.drop_near_copies else None
    eligible, counts = {}, {}
    for name, ds in sets.items():
        copies = None
        if radius is not None:
            dist, idx = nearest_train(ds.images, real.images)
            copies = near_copies(dist, idx, radius, p.quality.copy_threshold)
        eligible[name], counts[name] = gate(ds.images, ds.labels, judge, device,
                                            p.compose.gate.tau, copies)
        say(f"gate {name}: kept {int(eligible[name].sum())}/{len(ds)}")
    return eligible, counts
