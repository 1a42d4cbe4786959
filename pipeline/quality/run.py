"""The quality stage's work, set by set: `sets_to_score` names the sets (real-val, every
sample set, noise) once the judge and every set are there, and a `SetScorer`, built once per
worker process (pipeline.core.pool: each holds its own QualityContext), scores one set at a
time with `assess` and draws its closest-pairs figure. Scoring the sets side by side in
one-thread processes keeps both cores of a small CPU busy (CAS fits and feature passes of
small networks leave a second thread mostly idle); the rows come back in the order named.
"""
from __future__ import annotations

from pathlib import Path


def sets_to_score(p) -> list[str]:
    """The sets to score (real-val, every sample set, noise), once the judge and every set
    are there, each made from the prepared train split as it is now; one line naming what is
    missing or stale otherwise."""
    import json

    from synthaug.pipeline.core.errors import SynthaugError
    from synthaug.pipeline.data.lineage import check_fresh, check_made_from, dataset_hash
    from synthaug.pipeline.data.storage import is_dataset, read_meta

    if not (p.paths.judge / "config.json").is_file():
        raise SynthaugError(f"{p.paths.judge}: no judge; run `synthaug judge` (or `dvc repro`) first")
    missing = [n for n in p.sample.sets if not is_dataset(p.paths.synthetic / n)]
    if missing:
        raise SynthaugError(f"{p.paths.synthetic / missing[0]}: set {missing[0]!r} not sampled; run "
                            f"`synthaug sample {' '.join(missing)}` (or `dvc repro`) first")
    train_dir = p.paths.prepared / "train"
    now = dataset_hash(train_dir)
    try:
        judge = json.loads((p.paths.judge / "config.json").read_text()).get("judge")
    except (OSError, ValueError, AttributeError):
        judge = None  # unreadable: load_classifier names what is wrong when it reads it
    check_made_from(p.paths.judge, judge.get("trained_on") if isinstance(judge, dict) else None,
                    train_dir, now, "`synthaug judge`")
    for n in p.sample.sets:
        folder = p.paths.synthetic / n
        check_fresh(folder, read_meta(folder / "meta.json"), "synthetic", train_dir, now)
    return ["real-val", *p.sample.sets, "noise"]


class SetScorer:
    """A worker's (or this process's) QualityContext and sets; `score(name)` is one set's row
    (with `reference_name`), its closest-pairs figure written into `figs`."""

    def __init__(self, p, figs: Path):
        from synthaug.pipeline.classifiers.classifier import load_classifier
        from synthaug.pipeline.classifiers.config import TrainConfig
        from synthaug.pipeline.core.device import pick_device
        from synthaug.pipeline.data.prepare import held_back_reference
        from synthaug.pipeline.data.storage import read_dataset
        from synthaug.pipeline.quality.assess import QualityContext, judge_recipe, noise_set

        q, device = p.quality, pick_device(p.quality.device)
        train, val, test = (read_dataset(p.paths.prepared / s, mmap=False) for s in ("train", "val", "test"))
        judge, _ = load_classifier(p.paths.judge, device)
        self.ctx = QualityContext.build(train, val, test, judge, q, judge_recipe(TrainConfig(), q), p.models,
                                        device, reference=held_back_reference(p.paths.prepared, train, q.seed))
        self.train, self.figs, self.p = train, figs, p
        self.sets = {"real-val": (val.images, val.labels),
                     "noise": noise_set(max(1, len(val) // len(val.class_names)), train.shape,
                                        len(train.class_names), q.seed)}

    def score(self, name: str) -> dict:
        from synthaug.pipeline.data.storage import read_dataset
        from synthaug.pipeline.quality.assess import assess
        from synthaug.pipeline.figures.data import closest_pairs
        from synthaug.pipeline.quality.config import REFERENCES

        if name in self.sets:
            images, labels = self.sets[name]
        else:
            ds = read_dataset(self.p.paths.synthetic / name, mmap=False)
            images, labels = ds.images, ds.labels
        # the val split is scored with model selection on train (not on itself)
        train = self.train
        row = assess(name, images, labels, self.ctx,
                     (train.images, train.labels) if name == "real-val" else None)
        if name != "noise":
            closest_pairs(images, train.images, row["nearest_distance"], row["nearest_index"],
                          self.figs / f"closest_{name}.png",
                          title=f"{name}: the images closest to a training image (bottom)")
        return {**row, "kind": "reference" if name in REFERENCES else "synthetic",
                "reference_name": self.ctx.reference_name}
