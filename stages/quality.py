"""`synthaug quality`: which synthetic sets are worth training on, and which merely copy."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOpt, SetOpt, params_from, say, user_errors


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True) -> None:
    """Score every synthetic set under `sample.sets` against real images no generator saw
    (held-back train-pool images, else the train split), with the reference rows `real-val`
    (the real validation split: what a perfect generator scores) and `noise` (the floor).
    Per set: FID-domain / KID-domain (in the judge's penultimate-layer features; not Inception
    FID), FID-lite0 (EfficientNet-Lite0 ImageNet features), precision / recall / density /
    coverage, CAS (a classifier trained on the set alone, tested on real test) and CAS / real,
    judge agreement, near-copies of training images and the classes that fail.

    Writes paths.quality/quality.md (the table, ranks and figures), quality.json (for
    `dvc metrics show`, and what the report shows) and figures/ (FID-domain vs CAS, and each
    set's closest pairs to training images). Needs `synthaug judge` and `synthaug sample` first.
    """
    p = params_from(params, set_)
    from pipeline.data.outputs import atomic_output
    from pipeline.report import quality_page as page
    from pipeline.report.data_figures import quality_scatter

    train, ctx, entries = _context(p)
    q = p.quality
    with atomic_output(p.paths.quality) as tmp:
        (tmp / "figures").mkdir()
        rows = _score(entries, ctx, train, tmp / "figures", progress)
        quality_scatter(rows, tmp / "figures" / "fid_vs_cas.png")
        sets = page.record(rows)
        (tmp / "quality.json").write_text(json.dumps(sets, indent=2) + "\n")
        (tmp / "quality.md").write_text(page.page(sets, q.model, q.k, q.copy_threshold,
                                                  p.paths.synthetic, p.paths.quality,
                                                  ctx.reference_name))
    say(page.table(sets))
    say(f"-> {p.paths.quality / 'quality.md'}")


def _score(entries, ctx, train, figs: Path, progress: bool) -> list[dict]:
    """assess() of every set, with its closest-pairs figure; each set's scores said."""
    from tqdm.auto import tqdm

    from pipeline.evaluation.quality import assess
    from pipeline.report.data_figures import closest_pairs
    from pipeline.report.quality_page import METRICS, REFERENCES

    rows = []
    for name, images, labels in tqdm(entries, desc="quality", unit="set",
                                      disable=None if progress else True):
        # the val split is scored with model selection on train (not on itself)
        row = assess(name, images, labels, ctx,
                     (train.images, train.labels) if name == "real-val" else None)
        rows.append({**row, "kind": "reference" if name in REFERENCES else "synthetic"})
        say(f"quality {name}: " + "  ".join(f"{h} {fmt.format(row[k])}" for k, (h, _, fmt)
                                            in METRICS.items() if row.get(k) is not None))
        if name != "noise":
            closest_pairs(images, train.images, row["nearest_distance"], row["nearest_index"],
                          figs / f"closest_{name}.png",
                          title=f"{name}: the images closest to a training image (bottom)")
    return rows


def _context(p):
    """(the real train split, the QualityContext, the sets to score: real-val, every sample
    set, noise), once the judge and every set are there."""
    from pipeline.classifiers.classifier import load_classifier
    from pipeline.classifiers.config import TrainConfig
    from pipeline.core.device import pick_device
    from pipeline.core.errors import SynthaugError
    from pipeline.data.storage import is_dataset, read_dataset
    from pipeline.evaluation.quality import QualityContext, noise_set, recipe

    if not (p.paths.judge / "config.json").is_file():
        raise SynthaugError(f"{p.paths.judge}: no judge; run `synthaug judge` (or `dvc repro`) first")
    missing = [n for n in p.sample.sets if not is_dataset(p.paths.synthetic / n)]
    if missing:
        raise SynthaugError(f"{p.paths.synthetic / missing[0]}: set {missing[0]!r} not sampled; run "
                            f"`synthaug sample {' '.join(missing)}` (or `dvc repro`) first")
    q, device = p.quality, pick_device(p.quality.device)
    train, val, test = (read_dataset(p.paths.prepared / s, mmap=False) for s in ("train", "val", "test"))
    judge, _ = load_classifier(p.paths.judge, device)
    from pipeline.data.prepare import held_back_reference

    ctx = QualityContext.build(train, val, test, judge, q, recipe(TrainConfig(), q), p.models, device,
                               reference=held_back_reference(p.paths.prepared, train, q.seed))
    noise = noise_set(max(1, len(val) // len(val.class_names)), train.shape,
                      len(train.class_names), q.seed)
    sets = [(n, read_dataset(p.paths.synthetic / n, mmap=False)) for n in p.sample.sets]
    return train, ctx, [("real-val", val.images, val.labels),
                        *((n, ds.images, ds.labels) for n, ds in sets), ("noise", *noise)]
