"""The small-data protocol: repeated stratified k-fold cross-validation of the study.

On a small data set a held-out test split is too small to decide anything (at 10 test images
per class one image is several points), so `study.protocol: auto` cross-validates instead
when the prepared test split holds fewer than MIN_TEST_PER_CLASS images of some class (the
rule, pipeline.experiments.protocol.choose), and keeps the single holdout on larger data.
Cross-validation (the design's pure parts, the partition and each unit's split, are
pipeline.experiments.protocol's):

- every labelled image (the train pool, val and test splits that `synthaug prepare` wrote,
  duplicates already removed) falls into one of `folds` stratified, seeded folds, and this is
  repeated `repeats` times with a fresh partition (`partition`): every labelled image is
  tested once per repeat;
- per fold (a *unit*: repeat r, fold f) the other folds are split into a val split
  (`prepare.val_fraction` of all images, stratified) and a train pool, from which the k images
  per class of `prepare.train_per_class` are drawn as prepare draws them, the rest held back
  for the `more-real` control (`fold_split`);
- generators, classic copies and classifiers are trained per unit on that unit's k-per-class
  split only (the variants are composed as the sweep's when points compose them:
  `sweep.when_set`; generators through the caller's `synthesizer`), model selection on the
  unit's val split, each classifier tested once on the unit's test fold, which nothing saw
  before; with `augment.pipeline: auto` the classic preset is chosen per unit too, on the
  unit's own val split (pipeline.experiments.classic_choice.choose), never on images that a
  unit tests;
- each unit trains with its own seed (its index), so the spread across units counts the data
  split's variance and the initialisation's together (Bouthillier et al. 2021, "Accounting
  for variance in machine learning benchmarks", MLSys);
- every test prediction is kept, so comparisons are paired per image and per unit; the
  intervals (pipeline.stats.paired.corrected_test) correct the t-test for the overlap of the
  units' training sets (Nadeau and Bengio 2003).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from synthaug.pipeline.augment.config import AugmentConfig
from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.data.config import ComposeConfig
from synthaug.pipeline.experiments.protocol import Unit, fold_split, partition, unit_seed, units

@dataclasses.dataclass(frozen=True)
class FoldJob:
    """Everything a cross-validation worker needs, all picklable: the recipes, the study's
    variants and models, where the prepared data are and how to split it. `synthesizer`: a
    module-level function (val, device) -> Synthesize | None (generators live above
    pipeline/)."""
    train: TrainConfig
    custom_models: dict
    compose: ComposeConfig
    augment: AugmentConfig
    prepared: Path
    variants: list[str]
    models: list[str]
    folds: int
    repeats: int
    seed: int  # prepare.seed: the partition's seed
    val_fraction: float
    train_per_class: int | str | None  # prepare.train_per_class as set (auto: per unit)
    device: str
    synthesizer: Callable | None = None


def labelled(prepared: Path):
    """Every labelled image prepare kept (train pool, val, test; duplicates removed), in
    memory, as one PackedDataset in that order."""
    from synthaug.pipeline.data.prepare import read_pool
    from synthaug.pipeline.data.storage import PackedDataset, read_dataset

    parts = [read_pool(prepared), *(read_dataset(prepared / s) for s in ("val", "test"))]
    return PackedDataset(np.concatenate([np.asarray(p.images) for p in parts]),
                         np.concatenate([np.asarray(p.labels) for p in parts]),
                         list(parts[0].class_names), {"kind": "labelled"})


def unit_k(setting, pool_labels: np.ndarray, names: list[str]) -> tuple[int, np.ndarray]:
    """(k per class for a unit, its train pool's class counts): `prepare.train_per_class`
    resolved on this pool as prepare resolves it (null: the smallest class, all of it)."""
    from synthaug.pipeline.data.per_class import resolve_train_per_class

    counts = np.bincount(pool_labels, minlength=len(names))
    k, _ = resolve_train_per_class(setting, [(n, int(c)) for n, c in zip(names, counts)])
    return (int(counts.min()) if k is None else k), counts


class Worker:
    """One process's share of the cross-validation: all labelled images and the partition;
    each job is one unit's variants (its generators trained once) for some models."""

    def __init__(self, job: FoldJob):
        from synthaug.pipeline.core.device import pick_device

        # a device the parent resolved, or `auto` resolved here (a cell on a cluster's node)
        self.job, self.device = job, pick_device(job.device)
        self.data = labelled(job.prepared)
        self.fold_of = partition(self.data.labels, job.folds, job.repeats, job.seed)

    def unit_data(self, unit: Unit):
        """(SweepData of this unit: its val, test and train pool; k; its test indices)."""
        from synthaug.pipeline.data.storage import PackedDataset
        from synthaug.pipeline.experiments.sweep import SweepData

        d, j = self.data, self.job
        pool, val, test = fold_split(d.labels, self.fold_of[unit.repeat], unit.fold,
                                     j.val_fraction, j.seed)

        def pack(idx: np.ndarray, meta: dict) -> PackedDataset:
            return PackedDataset(d.images[idx], d.labels[idx], list(d.class_names), meta)

        k, _ = unit_k(j.train_per_class, d.labels[pool], list(d.class_names))
        train_pool = pack(pool, {"kind": "split", "content_hash": f"cv-{unit.name}",
                                 "prepare": {"seed": j.seed + unit_seed(unit, j.folds)}})
        data = SweepData(None, pack(val, {"kind": "val"}), pack(test, {"kind": "test"}),
                         train_pool, {})
        return data, k, test

    def augment_for(self, data, k: int, variants: list[str]):
        """(the augment section this unit composes with, the classic preset it chose or
        None): `augment.pipeline: auto` chosen on the unit's val split where a variant needs
        it (a classic part, online_augment: auto), in this worker (workers=1)."""
        from synthaug.pipeline.augment.config import AUTO
        from synthaug.pipeline.experiments.classic_choice import choose
        from synthaug.pipeline.experiments.sweep import split_of

        j = self.job
        cfgs = [j.compose.variants[v] for v in variants]
        if j.augment.pipeline != AUTO or not any("classic" in c.parts or c.online_augment == AUTO
                                                 for c in cfgs):
            return j.augment, None
        chosen = choose(split_of(data.pool, k), data.val, j.augment, j.train, j.custom_models,
                        self.device, workers=1).chosen
        return j.augment.model_copy(update={"pipeline": chosen}), chosen

    def run(self, item: tuple[Unit, list[tuple[str, str]]]) -> list[dict]:
        """Train and test every (variant, model) of `item` on its unit: one row each, with
        the test predictions in the order of the unit's test indices."""
        from synthaug.pipeline.classifiers.config import recipe
        from synthaug.pipeline.classifiers.metrics import classification_metrics
        from synthaug.pipeline.classifiers.trainer import train_classifier
        from synthaug.pipeline.classifiers.training import predict
        from synthaug.pipeline.experiments.sweep import Point, when_set

        unit, todo = item
        j = self.job
        data, k, test_idx = self.unit_data(unit)
        seed, names = unit_seed(unit, j.folds), list(data.test.class_names)
        synthesize = None if j.synthesizer is None else j.synthesizer(data.val, self.device)
        augment, chosen = self.augment_for(data, k, [v for v, _ in todo])
        rows, sets = [], {}
        for variant, model in todo:
            if variant not in sets:
                sets[variant] = when_set(Point("when", k, seed, variant), data, j.compose,
                                         augment, synthesize)
            images, labels, _, use, online = sets[variant]
            net, _, fit = train_classifier(images, labels, (data.val.images, data.val.labels),
                                           names, recipe(j.train, model, seed), j.custom_models,
                                           self.device, use=use, online=online)
            pred = predict(net, data.test.images, self.device).argmax(1).numpy()
            m = classification_metrics(data.test.labels, pred, names)
            rows.append({"repeat": unit.repeat, "fold": unit.fold, "seed": seed, "k": k,
                         "variant": variant, "model": model, "accuracy": m["accuracy"],
                         "macro_f1": m["macro_f1"], "train_images": int(len(labels)),
                         "test_index": test_idx.tolist(), "labels": data.test.labels.tolist(),
                         "pred": pred.astype(int).tolist(),
                         "classic": chosen, "train_seconds": round(fit.seconds, 2)})
        return rows


def skips(job: FoldJob, labels: np.ndarray, names: list[str]) -> list[dict]:
    """A record (variant, reason) per study variant that some unit cannot compose (a
    `more-real` part larger than that unit's held-back pool, ...): skipped, not an error, as
    the sweep skips its points (pipeline.experiments.checks.sweep_skip)."""
    from synthaug.pipeline.experiments.checks import sweep_skip

    fold_of = partition(labels, job.folds, job.repeats, job.seed)
    out: dict[str, dict] = {}
    for u in units(job.folds, job.repeats):
        pool, _, _ = fold_split(labels, fold_of[u.repeat], u.fold, job.val_fraction, job.seed)
        k, counts = unit_k(job.train_per_class, labels[pool], names)
        for v in job.variants:
            why = sweep_skip("when", k, v, counts, names, job.compose)
            if why is not None and v not in out:
                out[v] = {"variant": v, "reason": f"unit {u.name}: {why}"}
    return list(out.values())


def jobs(job: FoldJob, variants: list[str]) -> list[tuple[Unit, list[tuple[str, str]]]]:
    """The jobs, longest first (costs as the sweep's: pipeline.experiments.sweep_run): per
    unit, one job with every variant that needs generators (they train once per unit) and,
    under `augment.pipeline: auto`, every variant that needs the unit's classic choice (made
    once per unit), for every model; and one job per other variant and model."""
    from synthaug.pipeline.augment.config import AUTO
    from synthaug.pipeline.classifiers.names import model_kind
    from synthaug.pipeline.experiments.sweep_run import GENERATOR_COST, TRANSFER_FIT_COST

    fit = {m: TRANSFER_FIT_COST if model_kind(m) == "transfer" else 1 for m in job.models}
    out, cost = [], []
    cfg = job.compose.variants
    made = [v for v in variants if cfg[v].synthetic_parts() or job.augment.pipeline == AUTO
            and ("classic" in cfg[v].parts or cfg[v].online_augment == AUTO)]
    choice = len(job.augment.candidates) * len(job.augment.choose_seeds) if any(
        not cfg[v].synthetic_parts() for v in made) else 0
    gens = GENERATOR_COST if any(cfg[v].synthetic_parts() for v in made) else 0
    for u in units(job.folds, job.repeats):
        if made:
            out.append((u, [(v, m) for v in made for m in job.models]))
            cost.append(gens + choice + len(made) * sum(fit.values()))
        for v in variants:
            for m in job.models if v not in made else []:
                out.append((u, [(v, m)]))
                cost.append(fit[m])
    order = sorted(range(len(out)), key=lambda i: -cost[i])  # stable: ties in order
    return [out[i] for i in order]


def run(job: FoldJob, todo: list[tuple[Unit, list[tuple[str, str]]]], workers: int = 1,
        threads: int = 1, remote=None) -> Iterator[dict]:
    """Every row of every job, as jobs finish, over `workers` processes (pipeline.core.pool),
    or each job a cell on another engine (`remote`: pipeline.core.executors.Remote), kept for
    a rerun."""
    from synthaug.pipeline.core.pool import imap

    def describe(item) -> str:
        return f"unit {item[0].name} ({', '.join(sorted({v for v, _ in item[1]}))})"

    for _, rows in imap(Worker, (job,), Worker.run, todo, workers, threads, describe=describe,
                        remote=remote):
        yield from rows


def record(job: FoldJob, protocol: str, why: str, rows: list[dict], skipped: list[dict],
           n_labelled: int) -> dict:
    """What the crossval stage writes: the protocol and its rule, the design, every unit (its
    test images' indices into the labelled images and their labels) and every row (in unit,
    variant, model order) with its test predictions in the unit's order."""
    order = {(u.repeat, u.fold): i for i, u in enumerate(units(job.folds, job.repeats))}
    rows = sorted(rows, key=lambda r: (order[r["repeat"], r["fold"]],
                                       job.variants.index(r["variant"]),
                                       job.models.index(r["model"])))
    tested = {}
    for r in rows:
        unit = tested.setdefault((r["repeat"], r["fold"]), {
            "repeat": r["repeat"], "fold": r["fold"], "seed": r["seed"], "k": r["k"],
            "classic": None, "test_index": r["test_index"], "labels": r["labels"]})
        unit["classic"] = unit["classic"] or r["classic"]  # the unit's classic choice
    rows = [{k: v for k, v in r.items() if k not in ("test_index", "labels", "classic")}
            for r in rows]
    kfold = protocol == "kfold"
    return {"protocol": protocol, "why": why, "folds": job.folds if kfold else 0,
            "repeats": job.repeats if kfold else 0, "labelled": int(n_labelled),
            "variants": list(job.variants), "models": list(job.models),
            "units": [tested[key] for key in sorted(tested, key=order.get)], "rows": rows,
            "skipped": skipped}
