"""Running a sweep: the points of every model cut into jobs (`groups`), each job trained and
tested by a `Worker` (one process's data, device, generators and pseudo-labellers), the jobs of
all the models in one queue over worker processes on a CPU (pipeline.core.pool), the longest
first. What a point trains on is pipeline.experiments.sweep's.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from synthaug.pipeline.augment.config import AugmentConfig
from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.data.config import ComposeConfig
from synthaug.pipeline.data.storage import PackedDataset
from synthaug.pipeline.experiments.sweep import (Point, SweepData, Synthesize, labeller, training_set,
                                       when_set)


@dataclasses.dataclass(frozen=True)
class SweepJob:
    """Everything a sweep worker needs to rebuild its state, all picklable: the recipe, the
    compositions, where the data are, and `synthesizer` (a module-level function (val, device)
    -> Synthesize | None: generators live above pipeline/). The model is each job's."""
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
    """One process's share of a sweep: its data, device, generators and pseudo-labellers."""

    def __init__(self, job: SweepJob):
        from synthaug.pipeline.core.device import pick_device

        # a device the parent resolved, or `auto` resolved here (a cell on a cluster's node)
        self.job, self.device = job, pick_device(job.device)
        self.data = SweepData.load(job.prepared, job.synthetic, job.parts, job.pool)
        self.synthesize = None if job.synthesizer is None else job.synthesizer(self.data.val,
                                                                              self.device)
        self.labellers = {}  # model -> its pseudo-labeller (one classifier per k, on demand)

    def label(self, model: str):
        if model not in self.labellers:
            j = self.job
            self.labellers[model] = labeller(model, j.train, j.custom_models, self.data, self.device)
        return self.labellers[model]

    def run_group(self, item: tuple[str, list[Point]]) -> list[dict]:
        """Train and test `model` at every point of `group` (a point, or one k's when points
        that share its generated sets or pseudo-labels): one result row each."""
        from synthaug.pipeline.classifiers.config import recipe
        from synthaug.pipeline.classifiers.metrics import score
        from synthaug.pipeline.classifiers.trainer import train_classifier

        model, group = item
        j, data, sets, rows = self.job, self.data, {}, []
        for point in group:
            key = (point.sweep, point.variant, point.value)
            if key not in sets:
                sets[key] = (when_set(point, data, j.compose, j.augment, self.synthesize,
                                      self.label(model)) if point.sweep == "when" else
                             (*training_set(point, data, j.compose, j.ratio_variant), None, None))
            images, labels, variant, use, online = sets[key]
            net, _, fit = train_classifier(images, labels, (data.val.images, data.val.labels),
                                           data.real.class_names, recipe(j.train, model, point.seed),
                                           j.custom_models, self.device, use=use,
                                           online=online)
            m, _ = score(net, data.test, self.device)
            value = point.value if point.sweep == "ratio" else int(point.value)
            rows.append({"sweep": point.sweep, "value": value, "seed": point.seed,
                         "variant": variant, "model": model, "accuracy": m["accuracy"],
                         "macro_f1": m["macro_f1"], "train_images": len(labels),
                         "best_epoch": fit.best_epoch,
                         "val_accuracy": fit.best_val_accuracy,  # for choosing between recipes
                         "train_seconds": round(fit.seconds, 2)})
        return rows


# a job's cost in cnn fits: a transfer model's fit takes ~5 (efficientnet_lite0 12 s, cnn
# 2.4 s on one thread of a 2-core AMD EPYC), a generator ~12 (a VAE on the k split)
TRANSFER_FIT_COST, GENERATOR_COST = 5, 12


def groups(todo: dict[str, list[Point]], compose: ComposeConfig) -> list[tuple[str, list[Point]]]:
    """The jobs of a sweep, (model, points), longest first: every point its own job, but the
    when points at one k whose variants need generators or pseudo-labels together, so that
    each k's generators train (and its labeller fits) once per model's worker. A queue of many
    short jobs keeps every worker busy to the end, which whole seeds-of-a-set jobs did not."""
    from synthaug.pipeline.data.config import SEMI_FIT_COST

    from synthaug.pipeline.classifiers.names import model_kind
    from synthaug.pipeline.data.config import PSEUDO_REAL

    jobs, cost = [], []
    for model, points in todo.items():
        fit = TRANSFER_FIT_COST if model_kind(model) == "transfer" else 1
        made: dict[float, list[Point]] = {}
        for pt in points:
            cfg = compose.variants.get(pt.variant) if pt.sweep == "when" else None
            if cfg is not None and (cfg.synthetic_parts() or cfg.unlabelled
                                    or PSEUDO_REAL in cfg.parts):
                made.setdefault(pt.value, []).append(pt)
            else:
                jobs.append((model, [pt]))
                semi = cfg is not None and cfg.use.semi_supervised != "none"
                cost.append(fit * (SEMI_FIT_COST if semi else 1))
        for group in made.values():
            jobs.append((model, group))
            cost.append(fit * len(group) + GENERATOR_COST)
    order = sorted(range(len(jobs)), key=lambda i: -cost[i])  # stable: ties in order
    return [jobs[i] for i in order]


def check_ratios(todo: list[Point], data: SweepData, compose: ComposeConfig,
                 ratio_variant: str) -> None:
    """Compose every ratio point's set once (seed-free, cheap), so that a ratio the synthetic
    sets cannot fill fails before any training."""
    for value in {pt.value for pt in todo if pt.sweep == "ratio"}:
        training_set(Point("ratio", value, 0), data, compose, ratio_variant)


def run(job: SweepJob, todo: dict[str, list[Point]], workers: int = 1,
         threads: int = 1, remote: Any = None) -> Iterator[tuple[str, int, dict]]:
    """Train and test every model of `todo` (model -> its points) at each of its points with
    the study's recipe for it; yields (model, index into todo[model], result row) as points
    finish, spread over `workers` processes of `threads` torch threads each
    (pipeline.core.pool; 1: here, in order of the jobs). When points need `job.augment`
    (classic parts) and `job.synthesizer` (synthetic parts). Call `check_ratios` first: a
    worker's error stops the run only once the others started. `remote`: each job a cell on
    another engine (pipeline.core.executors), kept for a rerun."""
    from synthaug.pipeline.core.pool import imap

    jobs = groups(todo, job.compose)
    index = {(m, id(pt)): i for m, points in todo.items() for i, pt in enumerate(points)}
    for g, rows in imap(Worker, (job,), Worker.run_group, jobs, workers, threads,
                        describe=describe, remote=remote):
        model, group = jobs[g]
        for point, row in zip(group, rows):
            yield model, index[(model, id(point))], row


def describe(job: tuple[str, list[Point]]) -> str:
    """A job of the sweep in words: its model and its point(s)."""
    model, group = job
    pt = group[0]
    seeds = ", ".join(str(p.seed) for p in group)
    return (f"{model} {pt.sweep} {pt.value:g}" + (f" {pt.variant}" if len(group) == 1 and pt.variant
                                                   else "") + f" seed {seeds}")
