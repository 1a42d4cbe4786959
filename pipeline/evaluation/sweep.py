"""Sweeps: test accuracy against the amount of real data and of synthetic data.

Two kinds of points, each trained with the study's recipe for the model (`config.recipe`) and
tested on the real test split:
- `real_per_class` k: a real-only training set of k images per class, drawn from the train
  pool that `synthaug prepare` wrote (`prepare.read_pool`: the train split before
  `prepare.train_per_class` thinned it) exactly as `prepare.train_per_class` draws (each class
  a prefix of its own seeded permutation), so k = prepare.train_per_class is the study's own
  train split and the k=5 set lies inside the k=10 set. Nothing reloads the source.
- `ratio` r: the sweep's variant re-composed with r synthetic images per real one.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from pipeline.classifiers.config import TrainConfig
from pipeline.core.errors import SynthaugError
from pipeline.data.config import ComposeConfig
from pipeline.data.storage import PackedDataset
from pipeline.evaluation.config import SweepConfig


@dataclasses.dataclass(frozen=True)
class Point:
    sweep: str  # "real_per_class" | "ratio"
    value: float
    seed: int


def points(s: SweepConfig) -> list[Point]:
    return ([Point("real_per_class", k, seed) for k in s.real_per_class for seed in s.seeds]
            + [Point("ratio", r, seed) for r in s.ratios for seed in s.seeds])


@dataclasses.dataclass
class SweepData:
    """What the points train and test on, read from the stages' outputs."""
    real: PackedDataset  # the study's train split: the ratio points' real part
    val: PackedDataset  # model selection
    test: PackedDataset
    pool: PackedDataset | None  # the whole train split, memory-mapped (real_per_class points)
    synthetic: dict[str, PackedDataset]  # the ratio variant's synthetic sets

    @classmethod
    def load(cls, prepared: Path, synthetic: Path, parts: list[str], pool: bool) -> SweepData:
        """The splits under `prepared`, its pool when `pool` (some point draws from it) and
        the synthetic sets `parts` under `synthetic`."""
        from pipeline.data.prepare import read_pool
        from pipeline.data.storage import is_dataset, read_dataset

        real, val, test = (read_dataset(prepared / s, mmap=False) for s in ("train", "val", "test"))
        sets = {}
        for part in parts:
            if not is_dataset(folder := synthetic / part):
                raise SynthaugError(f"{folder}: set {part!r} of sweep.ratio_variant is missing; "
                                    f"run `synthaug sample {part}` (or `dvc repro`) first")
            sets[part] = read_dataset(folder, mmap=False)
        return cls(real, val, test, read_pool(prepared) if pool else None, sets)


def pool_seed(pool: PackedDataset) -> int:
    """The seed `prepare.train_per_class` drew with (recorded in the pool's meta.json)."""
    return int(pool.meta["prepare"]["seed"])


def per_class(pool: PackedDataset, k: int, seed: int) -> np.ndarray:
    """Indices of k images per class, the way `prepare.train_per_class` picks them."""
    from pipeline.data.prepare import subsample_per_class

    return subsample_per_class(np.arange(len(pool)), pool.labels, k, seed, pool.class_names)


def training_set(point: Point, data: SweepData, compose: ComposeConfig,
                 ratio_variant: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, variant name) of one point."""
    if point.sweep == "real_per_class":
        idx = per_class(data.pool, int(point.value), pool_seed(data.pool))
        return np.asarray(data.pool.images[idx]), data.pool.labels[idx], "real"  # gathers k x classes
    from pipeline.data.compose import compose_variant

    cfg = compose.variants[ratio_variant].model_copy(update={"ratio": float(point.value)})
    v = compose_variant(ratio_variant, cfg, {"real": data.real, **data.synthetic}, compose.seed)
    return v.images, v.labels, ratio_variant


def run(model: str, todo: list[Point], data: SweepData, train: TrainConfig, custom_models: dict,
        compose: ComposeConfig, ratio_variant: str, device: torch.device) -> Iterator[dict]:
    """Train and test `model` at every point of `todo` with `train`'s recipe for it; yields
    one result row per point."""
    from pipeline.classifiers.config import recipe
    from pipeline.classifiers.metrics import score
    from pipeline.classifiers.training import train_classifier

    composed = {pt.value: training_set(pt, data, compose, ratio_variant)  # fail before any
                for pt in todo if pt.sweep == "ratio"}  # training (the synthetic draw is seed-free)
    for point in todo:
        images, labels, variant = (composed[point.value] if point.sweep == "ratio" else
                                   training_set(point, data, compose, ratio_variant))
        net, _, fit = train_classifier(images, labels, (data.val.images, data.val.labels),
                                       data.real.class_names, recipe(train, model, point.seed),
                                       custom_models, device, point.seed)
        m, _ = score(net, data.test, device)
        value = int(point.value) if point.sweep == "real_per_class" else point.value
        yield {"sweep": point.sweep, "value": value, "seed": point.seed, "variant": variant,
               "model": model, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
               "train_images": len(labels), "best_epoch": fit.best_epoch,
               "train_seconds": round(fit.seconds, 2)}


def results_path(root: Path, model: str) -> Path:
    """Where `synthaug sweep --model MODEL` writes its rows, under paths.sweep (`root`)."""
    return root / model / "results.json"
