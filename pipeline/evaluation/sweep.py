"""Sweeps: test accuracy against the amount of real data and of synthetic data.

Two kinds of points, each trained with the study's recipe for the model and tested on the real
test split:
- `real_per_class` k: a real-only training set of k images per class, drawn from the full
  train pool exactly as `prepare.train_per_class` draws (each class a prefix of its own seeded
  permutation), so k = prepare.train_per_class is the study's own train split and the k=5 set
  lies inside the k=10 set.
- `ratio` r: the sweep's variant re-composed with r synthetic images per real one.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from stages.params import Params
from pipeline.data.storage import PackedDataset

if TYPE_CHECKING:
    from pipeline.data.prepare import Rows


@dataclasses.dataclass(frozen=True)
class Point:
    sweep: str  # "real_per_class" | "ratio"
    value: float
    seed: int


def points(p: Params) -> list[Point]:
    s = p.sweep
    return ([Point("real_per_class", k, seed) for k in s.real_per_class for seed in s.seeds]
            + [Point("ratio", r, seed) for r in s.ratios for seed in s.seeds])


@dataclasses.dataclass(frozen=True)
class TrainPool:
    """The whole train split, read lazily: `images[idx]` gathers only the rows a point draws
    (a folder source stays in its memory-mapped scratch file, however large)."""
    images: Rows
    labels: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def train_pool(p: Params) -> TrainPool:
    """The whole train split, before `prepare.train_per_class` thins it (same source, dedupe
    and split as `synthaug prepare`)."""
    from pipeline.data.prepare import prepare_splits
    from pipeline.data.sources import load_source

    cfg = p.prepare.model_copy(update={"train_per_class": None})
    src = load_source(cfg, p.paths.raw, progress=False)
    split = prepare_splits(src, cfg)["train"]
    return TrainPool(split.lazy_images, split.labels, list(src.class_names))


def per_class(pool: TrainPool, k: int, seed: int) -> np.ndarray:
    """Indices of k images per class, the way `prepare.train_per_class` picks them."""
    from pipeline.data.prepare import subsample_per_class

    return subsample_per_class(np.arange(len(pool)), pool.labels, k, seed, pool.class_names)


def training_set(p: Params, point: Point, real: PackedDataset, pool: Callable[[], TrainPool],
                 synthetic: dict[str, PackedDataset]) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, variant name) of one point."""
    if point.sweep == "real_per_class":
        data = pool()
        idx = per_class(data, int(point.value), p.prepare.seed)
        return data.images[idx], data.labels[idx], "real"
    from pipeline.data.compose import compose_variant

    name = p.sweep.ratio_variant
    cfg = p.compose.variants[name].model_copy(update={"ratio": float(point.value)})
    v = compose_variant(name, cfg, {"real": real, **synthetic}, p.compose.seed)
    return v.images, v.labels, name


def run(p: Params, model: str, device: torch.device, real: PackedDataset, val: PackedDataset,
        test: PackedDataset, synthetic: dict[str, PackedDataset],
        todo: list[Point] | None = None) -> Iterator[dict]:
    """Train and test `model` at every point; yields one result row per point."""
    from pipeline.classifiers.metrics import score
    from pipeline.classifiers.training import train_classifier

    cache: list[TrainPool] = []

    def pool() -> TrainPool:  # loaded once, and only when a real_per_class point needs it
        if not cache:
            cache.append(train_pool(p))
        return cache[0]

    todo = points(p) if todo is None else todo
    composed = {pt.value: training_set(p, pt, real, pool, synthetic)  # fail before any training
                for pt in todo if pt.sweep == "ratio"}  # (the synthetic draw is seed-free)
    for point in todo:
        images, labels, variant = (composed[point.value] if point.sweep == "ratio" else
                                   training_set(p, point, real, pool, synthetic))
        recipe = p.train.for_model(model, point.seed)
        net, _, fit = train_classifier(images, labels, (val.images, val.labels), real.class_names,
                                       recipe, p.models, device, point.seed)
        m, _ = score(net, test, device)
        value = int(point.value) if point.sweep == "real_per_class" else point.value
        yield {"sweep": point.sweep, "value": value, "seed": point.seed, "variant": variant,
               "model": model, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
               "train_images": len(labels), "best_epoch": fit.best_epoch,
               "train_seconds": round(fit.seconds, 2)}


def results_path(p: Params, model: str) -> Path:
    return p.paths.sweep / model / "results.json"
