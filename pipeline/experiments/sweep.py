"""Sweeps: test accuracy against the amount of real data and of synthetic data.

Two kinds of points, each trained with the study's recipe for the model (`config.recipe`) and
tested on the real test split:
- `real_per_class` k: a real-only training set of k images per class, drawn from the train
  pool that `synthaug prepare` wrote (`prepare.read_pool`: the train split before
  `prepare.train_per_class` thinned it) exactly as `prepare.train_per_class` draws (each class
  a prefix of its own seeded permutation), so k = prepare.train_per_class is the study's own
  train split and the k=5 set lies inside the k=10 set. Nothing reloads the source.
- `ratio` r: the sweep's variant re-composed with r synthetic images per real one.
- `when` (variant, k): a variant re-composed on the k-per-class split itself: `classic` copies
  of it, `more-real` from the rest of the pool, synthetic sets from generators trained on that
  split alone (`synthesize`, which the caller passes in: generators live above pipeline/).
Points at k <= `low_data_k` use `low_data_seeds` (small sets are noisy).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from synthaug.pipeline.augment.config import AugmentConfig
from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.config import ComposeConfig
from synthaug.pipeline.data.storage import PackedDataset
from synthaug.pipeline.experiments.config import SweepConfig


Synthesize = Callable[..., dict[str, PackedDataset]]  # (k, split, tag="", pool=None) -> sets
Labeller = Callable[[int, PackedDataset, np.ndarray], np.ndarray]  # (k, split, images) -> labels


@dataclasses.dataclass(frozen=True)
class Point:
    sweep: str  # "real_per_class" | "ratio" | "when"
    value: float
    seed: int
    variant: str = ""  # when points: the variant re-composed at k = value


def seeds_at(s: SweepConfig, k: float | None = None) -> list[int]:
    return s.low_data_seeds if k is not None and k <= s.low_data_k else s.seeds


def points(s: SweepConfig, model: str | None = None) -> list[Point]:
    """Every point of the sweep (`model`: only the when_models run the when points)."""
    when = model is None or model in s.when_models
    return ([Point("real_per_class", k, seed) for k in s.real_per_class for seed in seeds_at(s, k)]
            + [Point("ratio", r, seed) for r in s.ratios for seed in s.seeds]
            + [Point("when", k, seed, v) for k in s.when_per_class if when
               for v in s.when_variants for seed in seeds_at(s, k)])


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
        from synthaug.pipeline.data.prepare import read_pool
        from synthaug.pipeline.data.lineage import check_fresh
        from synthaug.pipeline.data.storage import is_dataset, read_dataset

        real, val, test = (read_dataset(prepared / s, mmap=False) for s in ("train", "val", "test"))
        sets = {}
        for part in parts:
            if not is_dataset(folder := synthetic / part):
                raise SynthaugError(f"{folder}: set {part!r} of sweep.ratio_variant is missing; "
                                    f"run `synthaug sample {part}` (or `dvc repro`) first")
            sets[part] = read_dataset(folder, mmap=False)
            # drawn from a generator of the train split as it is now, or stale
            check_fresh(folder, sets[part].meta, "synthetic", prepared / "train",
                        real.meta["content_hash"])
        return cls(real, val, test, read_pool(prepared) if pool else None, sets)


def pool_seed(pool: PackedDataset) -> int:
    """The seed `prepare.train_per_class` drew with (recorded in the pool's meta.json)."""
    return int(pool.meta["prepare"]["seed"])


def per_class(pool: PackedDataset, k: int, seed: int) -> np.ndarray:
    """Indices of k images per class, the way `prepare.train_per_class` picks them."""
    from synthaug.pipeline.data.prepare import subsample_per_class

    return subsample_per_class(np.arange(len(pool)), pool.labels, k, seed, pool.class_names)


def split_of(pool: PackedDataset, k: int) -> PackedDataset:
    """The k-per-class train split, drawn from the pool as prepare draws it."""
    idx = per_class(pool, k, pool_seed(pool))
    return PackedDataset(np.asarray(pool.images[idx]), pool.labels[idx], list(pool.class_names),
                         {"kind": "split", "k": k, "content_hash": f"pool-k{k}"})


def when_set(point: Point, data: SweepData, compose: ComposeConfig, augment: AugmentConfig,
             synthesize: Synthesize | None, label: Labeller | None = None):
    """A when point's training set, its variant composed on the k-per-class split alone:
    (images, labels, variant name, its recipe of use or None, its online augmentation).
    Labelled few, unlabelled many: `pseudo-real` and `unlabelled` variants see the rest of
    the pool with the labels `label` (a classifier trained on the split) gives it (`unlabelled:
    pretrain`: the generators pretrain on those images without labels, then adapt); a
    `use.semi_supervised` recipe (FixMatch) gets those images without labels."""
    from synthaug.pipeline.classifiers.use import Use
    from synthaug.pipeline.data.compose import compose_variant
    from synthaug.pipeline.data.config import MORE_REAL, PSEUDO_REAL
    from synthaug.pipeline.experiments.classic_choice import classic_copies, online_spec
    from synthaug.pipeline.data.prepare import held_out

    k, cfg = int(point.value), compose.variants[point.variant]
    real = split_of(data.pool, k)
    parts = {"real": real}
    if "classic" in cfg.parts:  # augment.pipeline as resolved by the caller (auto: the choice
        # `synthaug augment` made on the study's split, classic_choice.chosen_pipeline)
        e = classic_copies(real.images, real.labels, augment.pipeline,
                           augment.copies_per_image, augment.seed)
        parts["classic"] = PackedDataset(e.images, e.labels, real.class_names)
    if MORE_REAL in cfg.parts:
        parts[MORE_REAL] = held_out(data.pool, k, pool_seed(data.pool))
    if cfg.pseudo_labels:
        if label is None:
            raise SynthaugError(f"sweep.when_variants: {point.variant!r} needs pseudo-labels "
                                "but no labeller was given")
        rest = held_out(data.pool, k, pool_seed(data.pool))
        parts[PSEUDO_REAL] = PackedDataset(rest.images, label(k, real, rest.images),
                                           real.class_names, {"kind": PSEUDO_REAL, "k": k},
                                           rest.manifest)
    if cfg.synthetic_parts():
        if synthesize is None:
            raise SynthaugError(f"sweep.when_variants: {point.variant!r} has synthetic parts "
                                "but no generator trainer was given")
        if cfg.generator_tag == "pretrain":  # pretrained on the rest of the pool, unlabelled
            rest = held_out(data.pool, k, pool_seed(data.pool))
            parts.update(synthesize(k, real, "pretrain", np.asarray(rest.images)))
        elif cfg.generator_tag == "unlabelled":  # the generators see the pseudo-labelled pool too
            pseudo = parts[PSEUDO_REAL]
            both = PackedDataset(np.concatenate([real.images, pseudo.images]),
                                 np.concatenate([real.labels, pseudo.labels]), real.class_names,
                                 {"kind": "split", "k": k, "content_hash": f"pool-k{k}-unlabelled"})
            parts.update(synthesize(k, both, "unlabelled"))
        else:
            parts.update(synthesize(k, real))
    v = compose_variant(point.variant, cfg, parts, compose.seed)
    use = Use.of(v.meta, v.provenance, f"compose.variants.{point.variant}")
    if cfg.use.semi_supervised != "none":  # FixMatch: the rest of the pool, its labels dropped
        use.unlabelled = np.asarray(held_out(data.pool, k, pool_seed(data.pool)).images)
    return (v.images, v.labels, point.variant, use,
            online_spec(v.meta.get("online_augment"), augment.pipeline))  # auto: the choice


def training_set(point: Point, data: SweepData, compose: ComposeConfig,
                 ratio_variant: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, variant name) of a real_per_class or ratio point."""
    if point.sweep == "real_per_class":
        idx = per_class(data.pool, int(point.value), pool_seed(data.pool))
        return np.asarray(data.pool.images[idx]), data.pool.labels[idx], "real"  # gathers k x classes
    from synthaug.pipeline.data.compose import compose_variant

    cfg = compose.variants[ratio_variant].model_copy(update={"ratio": float(point.value)})
    v = compose_variant(ratio_variant, cfg, {"real": data.real, **data.synthetic}, compose.seed)
    return v.images, v.labels, ratio_variant


def labeller(model: str, train: TrainConfig, custom_models: dict, data: SweepData,
             device: torch.device) -> Labeller:
    """(k, split, images) -> labels: what a classifier trained on the labelled k-per-class split
    (`model`'s recipe, the first seed of the sweep: 0) predicts for unlabelled images; one
    classifier per k."""
    from synthaug.pipeline.classifiers.config import recipe
    from synthaug.pipeline.classifiers.trainer import train_classifier
    from synthaug.pipeline.classifiers.training import predict

    nets: dict[int, torch.nn.Module] = {}

    def label(k: int, split: PackedDataset, images: np.ndarray) -> np.ndarray:
        if k not in nets:
            nets[k] = train_classifier(split.images, split.labels, (data.val.images, data.val.labels),
                                       split.class_names, recipe(train, model, 0), custom_models,
                                       device)[0]
        return predict(nets[k], images, device).argmax(1).numpy().astype(np.int64)

    return label


def feasible(todo: list[Point], pool: PackedDataset | None,
             compose: ComposeConfig) -> tuple[list[Point], list[dict]]:
    """(the points of `todo` the train pool can give, one record per skipped k: sweep, value,
    variant, reason). A k above the smallest class (or a when variant that would draw more
    held-back images than the pool has beyond the k) is skipped, not an error: the rest of
    the sweep still runs (`synthaug check` names the skips before any work)."""
    from synthaug.pipeline.experiments.checks import sweep_skip

    if pool is None:
        return todo, []
    counts = np.bincount(np.asarray(pool.labels), minlength=len(pool.class_names))
    kept, skipped = [], {}
    for pt in todo:
        why = None if pt.sweep == "ratio" else sweep_skip(
            pt.sweep, int(pt.value), pt.variant, counts, list(pool.class_names), compose)
        if why is None:
            kept.append(pt)
        else:
            skipped.setdefault((pt.sweep, pt.value, pt.variant), {
                "sweep": pt.sweep, "value": int(pt.value), "variant": pt.variant or "real",
                "reason": why})
    return kept, list(skipped.values())


def todo(s: SweepConfig, compose: ComposeConfig, models: list[str],
         pool: PackedDataset | None) -> tuple[dict[str, list[Point]], dict[str, list[dict]], list[str]]:
    """(model -> the points the pool can give, model -> its skipped records, the skips worded
    once each, whichever models skip them)."""
    points_of, skipped = {}, {}
    for m in models:
        points_of[m], skipped[m] = feasible(points(s, m), pool, compose)
    notes = {f"note: sweep skips {k['sweep']} {k['variant']} k={k['value']}: {k['reason']}": None
             for m in models for k in skipped[m]}
    return points_of, skipped, list(notes)


def results_path(root: Path, model: str) -> Path:
    """Where `synthaug sweep` writes a model's rows, under paths.sweep (`root`)."""
    return root / model / "results.json"


def write_results(root: Path, model: str, rows: list[dict], skipped: list[dict]) -> Path:
    """A model's rows (one per point, in the order of the points) and skips, atomically."""
    import json

    from synthaug.pipeline.core.outputs import atomic_output

    out = results_path(root, model)
    with atomic_output(out, is_dir=False) as f:
        f.write_text(json.dumps({"model": model, "rows": rows, "skipped": skipped}, indent=1) + "\n")
    return out
