"""Is a synthetic set worth training on? `assess` measures one set against real images, given
a `QualityContext` built once per run. The distribution metrics (FID/KID, precision/recall/
density/coverage) compare with a *reference* of real images no generator saw: held-back images
of the train pool (the train split's size and class balance; never val or test), else the
train split itself. Against the train split, sets that start from training images (posterior
jitter, img2img) would cover it better than any independent real sample.

Everything is measured through a *judge*: the quality recipe (`judge_recipe`: TrainConfig defaults
with quality's model, epochs and seed) trained on the real train split. Its penultimate layer
(the input of its last Linear) is the domain feature space of FID/KID and
precision/recall/density/coverage; its confidence drives the quality gate. Optionally FID is
also measured in ImageNet features (EfficientNet-Lite0, weights from the installed package,
offline). The metrics live beside this module:

- `features`: the judge's penultimate features and EfficientNet-Lite0's ImageNet ones;
- `distribution`: FID/KID (torchmetrics, on precomputed features) and precision/recall/
  density/coverage, each set scored on a subset of the real val split's size (`equal_size`);
- `memorisation`: nearest training image in pixels, near-copies;
- `usefulness`: CAS (the recipe trained on the set alone, tested on the real test split),
  judge agreement, and the per-image `gate` that compose applies to gated synthetic parts.
`noise_set` is the floor row: uniform noise with balanced labels.

Library code: numpy in and out at the edges, torch inside, no printing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.data.compose import balanced_labels
from synthaug.pipeline.quality.config import QualityConfig
from synthaug.pipeline.quality.distribution import bootstrap, equal_size, fid_kid, min_reference, prdc
from synthaug.pipeline.quality.features import FeatureExtractor, features, imagenet_extractor
from synthaug.pipeline.quality.memorisation import near_copies, nearest_train, train_radius
from synthaug.pipeline.quality.usefulness import cas, judge_agreement


def judge_recipe(train_cfg: TrainConfig, q: QualityConfig) -> TrainConfig:
    """The judge's (and CAS's) recipe: `train_cfg` (the stages pass TrainConfig's defaults, so
    tuning the `train` section leaves quality scores valid) with model, epochs and seed from
    `quality`, and no online augmentation (the sets are scored as they are): the scoring
    form of `pipeline.classifiers.config.recipe`."""
    from synthaug.pipeline.classifiers.config import recipe as train_recipe

    return train_recipe(train_cfg, q.model, q.seed, q.epochs, scoring=True)


def noise_set(n_per_class: int, shape: tuple[int, int, int], num_classes: int,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform uint8 noise images (shape = C, H, W) with balanced labels: the floor row."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_per_class * num_classes, h, w, c), dtype=np.uint8)
    return images, balanced_labels(num_classes, n_per_class)


# ---------------------------------------------------------------------- one set
def _xy(split: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(split, "images"):
        return np.asarray(split.images), np.asarray(split.labels)
    return np.asarray(split[0]), np.asarray(split[1])


@dataclass
class QualityContext:
    """What every set is measured against; built once per run by `QualityContext.build`."""

    q: QualityConfig
    recipe: TrainConfig
    custom_models: dict
    device: torch.device
    class_names: list[str]
    judge: nn.Module
    domain: FeatureExtractor  # the judge's penultimate features
    lite0: FeatureExtractor | None  # ImageNet features, or None (see lite0_note)
    lite0_note: str  # weights file, or why there are no ImageNet features
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    train_feats: torch.Tensor  # the reference's features (see the module docstring)
    train_lite0: torch.Tensor | None
    reference_name: str  # what the reference images are
    radius: np.ndarray  # train_radius of the train split
    reference: dict  # judge_agreement on the real test split: the real reference per class

    @property
    def judge_test_accuracy(self) -> float:
        return self.reference["accuracy"]

    @classmethod
    def build(cls, train, val, test, judge: nn.Module, q: QualityConfig, recipe: TrainConfig,
              custom_models: dict, device: torch.device,
              class_names: list[str] | None = None, reference=None) -> QualityContext:
        """train/val/test: packed data sets (anything with .images and .labels) or
        (images, labels) pairs; class names from `train.class_names` unless given.
        `reference`: the real images the distribution metrics compare with (None: train)."""
        tr, va, te = _xy(train), _xy(val), _xy(test)
        ref = tr if reference is None else _xy(reference)
        names = list(class_names or getattr(train, "class_names", None)
                     or [str(c) for c in range(int(tr[1].max()) + 1)])
        judge = judge.to(device).eval()
        domain = FeatureExtractor(judge)
        if q.imagenet_features:
            lite0, note = imagenet_extractor((tr[0].shape[3], *tr[0].shape[1:3]), device)
        else:
            lite0, note = None, "quality.imagenet_features is off"
        return cls(q, recipe, custom_models, device, names, judge, domain, lite0, note, tr, va,
                   te, features(domain, ref[0], device),
                   features(lite0, ref[0], device) if lite0 is not None else None,
                   "the train split" if reference is None else
                   f"{len(ref[1])} held-back real train-pool images",
                   train_radius(tr[0]), judge_agreement(judge, *te, device, names))


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def assess(name: str, images: np.ndarray, labels: np.ndarray, ctx: QualityContext,
           select: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """All metrics of one labelled set against the real reference (and the train split for
    memorisation).

    Keys: name, images, fid_domain, kid_domain, kid_domain_std, fid_lite0 (None without
    ImageNet features), precision, recall, density, coverage, ci (metric -> its 95% bootstrap
    interval [lo, hi]: FID/KID-domain and the four above; distribution.bootstrap),
    reference_images and min_reference (below it the distance metrics are unreliable:
    distribution.min_reference), cas, cas_ratio (CAS / the judge's
    test accuracy; both None when quality.cas is off), judge_accuracy, judge_confidence,
    near_copy_fraction, nearest_median, nearest_distance / nearest_index (arrays, per image),
    per_class (class -> images, cas_recall, judge_agreement, near_copy_fraction),
    failing_classes (CAS recall or judge agreement below half the real reference's: the
    judge's own recall on the real test split) and seconds (time per part).
    CAS selects its model on the real val split, or on `select` (scoring the val split itself,
    pass the train split).
    """
    q, names = ctx.q, ctx.class_names
    images, labels = np.asarray(images), np.asarray(labels)
    seconds, t = {}, time.perf_counter()

    def lap(key: str) -> None:
        nonlocal t
        seconds[key] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()

    row: dict[str, Any] = {"name": name, "images": len(labels)}
    feats = features(ctx.domain, images, ctx.device)
    dist_metrics = fid_kid(ctx.train_feats, feats, q.kid_subset_size, q.seed)
    row.update(fid_domain=dist_metrics["fid"], kid_domain=dist_metrics["kid"],
               kid_domain_std=dist_metrics["kid_std"])
    scored = equal_size(feats, len(ctx.val[1]), q.seed)
    if min(len(scored), len(ctx.train_feats)) > q.k:
        row.update(prdc(ctx.train_feats, scored, q.k, outliers=q.outlier_radii))
    else:  # k-th neighbours need more than k images a set: not measured, and said so
        row.update(precision=None, recall=None, density=None, coverage=None,
                   prdc_note=f"not measured: {min(len(scored), len(ctx.train_feats))} images, "
                             f"quality.k={q.k} neighbours need more")
    lap("domain")
    # the sample size's say: 95% bootstrap intervals and whether the reference is big enough
    point = {"fid": row["fid_domain"], "kid": row["kid_domain"],
             **{k: row[k] for k in ("precision", "recall", "density", "coverage")
                if row[k] is not None}}
    ci = bootstrap(ctx.train_feats, feats, scored, point, q.k, q.outlier_radii, q.seed)
    row["ci"] = {{"fid": "fid_domain", "kid": "kid_domain"}.get(k, k): v for k, v in ci.items()}
    row.update(reference_images=len(ctx.train_feats),
               min_reference=min_reference(ctx.train_feats.shape[1]))
    lap("bootstrap")
    row["fid_lite0"] = None
    if ctx.lite0 is not None:
        lite = features(ctx.lite0, images, ctx.device)
        row["fid_lite0"] = fid_kid(ctx.train_lite0, lite, q.kid_subset_size, q.seed)["fid"]
        lap("lite0")
    agree = judge_agreement(ctx.judge, images, labels, ctx.device, names)
    row.update(judge_accuracy=agree["accuracy"], judge_confidence=agree["mean_confidence"])
    lap("judge")
    dist, idx = nearest_train(images, ctx.train[0])
    copies = near_copies(dist, idx, ctx.radius, q.copy_threshold)
    row.update(near_copy_fraction=float(copies.mean()) if len(copies) else 0.0,
               nearest_median=_median(dist), nearest_distance=dist, nearest_index=idx)
    lap("memorisation")
    score = None
    if q.cas:
        score = cas(images, labels, ctx.test, select or ctx.val, names, ctx.recipe, ctx.custom_models,
                    ctx.device)
        lap("cas")
    row["cas"] = score["accuracy"] if score else None
    row["cas_ratio"] = (score["accuracy"] / ctx.judge_test_accuracy
                        if score and ctx.judge_test_accuracy else None)

    per_class, failing = {}, []
    for c, cname in enumerate(names):
        mask = labels == c
        ref = ctx.reference["per_class"][cname]
        entry = {"images": int(mask.sum()),
                 "cas_recall": score["per_class"][cname] if score else None,
                 "judge_agreement": agree["per_class"][cname],
                 "near_copy_fraction": float(copies[mask].mean()) if mask.any() else None}
        per_class[cname] = entry
        low = [entry[k] is not None and ref is not None and entry[k] < ref / 2
               for k in ("cas_recall", "judge_agreement")]
        if any(low) or not mask.any():  # a class the set lacks fails too
            failing.append(cname)
    row.update(per_class=per_class, failing_classes=failing, seconds=seconds)
    return row
