"""Running a sweep: its points cut into jobs (`groups`), each job trained and tested by a
`Worker` (one process's data, device, generators and pseudo-labeller), the jobs spread over
worker processes on a CPU (pipeline.core.pool). What a point trains on is
pipeline.evaluation.sweep's.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from pipeline.augment.config import AugmentConfig
from pipeline.classifiers.config import TrainConfig
from pipeline.data.config import ComposeConfig
from pipeline.data.storage import PackedDataset
from pipeline.evaluation.sweep import (Point, SweepData, Synthesize, labeller, training_set,
                                       when_set)


@dataclasses.dataclass(frozen=True)
class SweepJob:
    """Everything a sweep worker needs to rebuild its state, all picklable: the recipe, the
    compositions, where the data are, and `synthesizer` (a module-level function (val, device)
    -> Synthesize | None: generators live above pipeline/)."""
    model: str
    train: TrainConfig
    custom_models: dict
    compose: ComposeConfig
    augment: AugmentConfig
    ratio_variant: str
    prepared: Path
    synthetic: Path
    parts: list[str]  # the ratio variant's synthetic sets
    pool: bool  # some point draws from the train pool
    device: str
    synthesizer: Callable[[PackedDataset, torch.device], Synthesize | None] | None = None


class Worker:
    """One process's share of a sweep: its data, device, generators and pseudo-labeller."""

    def __init__(self, job: SweepJob):
        self.job, self.device = job, torch.device(job.device)
        self.data = SweepData.load(job.prepared, job.synthetic, job.parts, job.pool)
        self.synthesize = None if job.synthesizer is None else job.synthesizer(self.data.val,
                                                                              self.device)
        self.label = labeller(job.model, job.train, job.custom_models, self.data, self.device)

    def run_group(self, group: list[Point]) -> list[dict]:
        """Train and test at every point of `group` (one training set, or one k's generated
        sets, shared by its points): one result row each."""
        from pipeline.classifiers.config import recipe
        from pipeline.classifiers.metrics import score
        from pipeline.classifiers.training import train_classifier

        j, data, sets, rows = self.job, self.data, {}, []
        for point in group:
            key = (point.sweep, point.variant, point.value)
            if key not in sets:
                sets[key] = (when_set(point, data, j.compose, j.augment, self.synthesize,
                                      self.label) if point.sweep == "when" else
                             (*training_set(point, data, j.compose, j.ratio_variant), None, None))
            images, labels, variant, use, online = sets[key]
            net, _, fit = train_classifier(images, labels, (data.val.images, data.val.labels),
                                           data.real.class_names, recipe(j.train, j.model, point.seed),
                                           j.custom_models, self.device, point.seed, use=use,
                                           online=online)
            m, _ = score(net, data.test, self.device)
            value = point.value if point.sweep == "ratio" else int(point.value)
            rows.append({"sweep": point.sweep, "value": value, "seed": point.seed,
                         "variant": variant, "model": j.model, "accuracy": m["accuracy"],
                         "macro_f1": m["macro_f1"], "train_images": len(labels),
                         "best_epoch": fit.best_epoch,
                         "val_accuracy": fit.best_val_accuracy,  # for choosing between recipes
                         "train_seconds": round(fit.seconds, 2)})
        return rows


def groups(todo: list[Point], compose: ComposeConfig) -> list[list[Point]]:
    """`todo` cut into the jobs of a sweep, longest first: the points of one training set
    together (its seeds), and every when point at one k whose variant needs generators or
    pseudo-labels together, so that each k's generators train (and its labeller fits) once."""
    from pipeline.data.config import PSEUDO_REAL

    keyed: dict[tuple, list[Point]] = {}
    for pt in todo:
        cfg = compose.variants.get(pt.variant) if pt.sweep == "when" else None
        made = cfg is not None and bool(cfg.synthetic_parts() or cfg.unlabelled
                                        or PSEUDO_REAL in cfg.parts)
        keyed.setdefault(("when-made", pt.value) if made else (pt.sweep, pt.variant, pt.value),
                         []).append(pt)
    # a generator takes about 12 cnn fits (a VAE: 59 s on 2 cores, a fit 4 s)
    cost = {key: len(g) + 12 * (key[0] == "when-made") for key, g in keyed.items()}
    return [keyed[key] for key in sorted(keyed, key=lambda key: -cost[key])]  # stable: ties in order


def check_ratios(todo: list[Point], data: SweepData, compose: ComposeConfig,
                 ratio_variant: str) -> None:
    """Compose every ratio point's set once (seed-free, cheap), so that a ratio the synthetic
    sets cannot fill fails before any training."""
    for value in {pt.value for pt in todo if pt.sweep == "ratio"}:
        training_set(Point("ratio", value, 0), data, compose, ratio_variant)


def run(job: SweepJob, todo: list[Point], workers: int = 1,
        threads: int = 1) -> Iterator[tuple[int, dict]]:
    """Train and test `job.model` at every point of `todo` with the study's recipe for it;
    yields (index into `todo`, result row) as points finish, spread over `workers` processes
    of `threads` torch threads each (pipeline.core.pool; 1: here, in order of the jobs). When
    points need `job.augment` (classic parts) and `job.synthesizer` (synthetic parts).
    Call `check_ratios` first: a worker's error stops the run only once the others started."""
    from pipeline.core.pool import imap

    jobs = groups(todo, job.compose)
    index = {id(pt): i for i, pt in enumerate(todo)}
    for g, rows in imap(Worker, (job,), Worker.run_group, jobs, workers, threads):
        for point, row in zip(jobs[g], rows):
            yield index[id(point)], row
