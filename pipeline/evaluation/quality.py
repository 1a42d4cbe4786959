"""Is a synthetic set worth training on? Distribution, usefulness and memorisation metrics.

Everything is measured against the real train split, through a *judge*: the quality recipe
(`recipe`: TrainConfig defaults with quality's model, epochs and seed) trained on the real
train split. Its penultimate layer (the input of its last
Linear) is the domain feature space of FID/KID and precision/recall/density/coverage; its
confidence drives the quality gate. Optionally FID is also measured in ImageNet features
(EfficientNet-Lite0, weights from the installed package, offline).

- `fid_kid`: torchmetrics' FrechetInceptionDistance / KernelInceptionDistance. Features are
  computed once per set (`features`) and fed through an identity module that declares their
  width, so a set is never pushed through a network twice.
- `prdc`: precision/recall of k-NN manifolds (Kynkaanniemi et al. 2019) and density/coverage
  (Naeem et al. 2020); balls are closed (distance <= the k-NN radius), as in Kynkaanniemi's
  definition. Each set is scored on a subset of the real val split's size (`equal_size`):
  recall and coverage grow with the number of fakes.
- memorisation: `nearest_train` (RMS pixel distance in [0, 1] units), `train_radius` and
  `near_copies` (closer to a training image than copy_threshold x that image's distance to its
  own nearest neighbour).
- usefulness: `cas` (Classification Accuracy Score: the recipe trained on the set alone, tested
  on the real test split) and `judge_agreement`.
- `gate`: the per-image filter that compose applies to gated synthetic parts.
- `assess` puts it together for one set, given a `QualityContext` built once.

Library code: numpy in and out at the edges, torch inside, no printing.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.classifiers.config import TrainConfig

from pipeline.evaluation.config import QualityConfig
from pipeline.classifiers.training import predict, train_classifier

LITE0_SIZE = 64  # ImageNet features: images are resized to this inside EfficientNet-Lite0


# ---------------------------------------------------------------------- training
def recipe(train_cfg: TrainConfig, q: QualityConfig) -> TrainConfig:
    """The judge's (and CAS's) recipe: `train_cfg` (the stages pass TrainConfig's defaults, so
    tuning the `train` section leaves quality scores valid) with model, epochs and seed from
    `quality`, and no online augmentation (the sets are scored as they are)."""
    data = train_cfg.model_dump()
    data.update(model=q.model, epochs=q.epochs, seed=q.seed, online_augment=None)
    return TrainConfig.model_validate(data)


def probabilities(model: nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Softmax probabilities (float64 N x classes) for uint8 N x H x W x C images."""
    return torch.softmax(predict(model, images, device).double(), dim=1).numpy()


def per_class_recall(pred: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """class name -> fraction of its images predicted as it (None: no image of that class)."""
    out = {}
    for c, name in enumerate(class_names):
        mask = labels == c
        out[name] = float((pred[mask] == c).mean()) if mask.any() else None
    return out


def test_accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                  device: torch.device) -> float:
    return float((predict(model, images, device).argmax(1).numpy() == np.asarray(labels)).mean())


def cas(images: np.ndarray, labels: np.ndarray, test: tuple[np.ndarray, np.ndarray],
        select: tuple[np.ndarray, np.ndarray], class_names: list[str], recipe: TrainConfig,
        custom_models: dict, device: torch.device, seed: int) -> dict:
    """Classification Accuracy Score: the recipe trained on this set alone (model selection on
    `select`, the real val split), tested on the real `test` split.
    Returns accuracy and per-class recall."""
    model, _, _ = train_classifier(images, labels, select, class_names, recipe, custom_models,
                                   device, seed)
    pred = predict(model, test[0], device).argmax(1).numpy()
    y = np.asarray(test[1])
    return {"accuracy": float((pred == y).mean()),
            "per_class": per_class_recall(pred, y, class_names)}


def judge_agreement(judge: nn.Module, images: np.ndarray, labels: np.ndarray,
                    device: torch.device, class_names: list[str] | None = None) -> dict:
    """How often the judge predicts each image's label (overall and per class), and the mean
    probability it gives that label."""
    p = probabilities(judge, images, device)
    y = np.asarray(labels)
    names = class_names or [str(c) for c in range(p.shape[1])]
    return {"accuracy": float((p.argmax(1) == y).mean()),
            "per_class": per_class_recall(p.argmax(1), y, names),
            "mean_confidence": float(p[np.arange(len(y)), y].mean())}


def gate(images: np.ndarray, labels: np.ndarray, judge: nn.Module, device: torch.device,
         tau: float, near_copy_mask: np.ndarray | None = None,
         class_names: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """Keep images whose judge probability of their own label is >= tau and that are not
    near-copies. Returns (keep mask, per class {kept, low_confidence, near_copy}); each image
    is counted once, a near-copy as near_copy whatever its confidence."""
    y = np.asarray(labels)
    p = probabilities(judge, images, device)
    names = class_names or [str(c) for c in range(p.shape[1])]
    copy = np.zeros(len(y), bool) if near_copy_mask is None else np.asarray(near_copy_mask, bool)
    confident = p[np.arange(len(y)), y] >= tau
    keep = confident & ~copy
    counts = {name: {"kept": int((keep & (y == c)).sum()),
                     "low_confidence": int((~confident & ~copy & (y == c)).sum()),
                     "near_copy": int((copy & (y == c)).sum())}
              for c, name in enumerate(names)}
    return keep, counts


def noise_set(n_per_class: int, shape: tuple[int, int, int], num_classes: int,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform uint8 noise images (shape = C, H, W) with balanced labels: the floor row."""
    from generators.samplers import balanced_labels

    c, h, w = shape
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_per_class * num_classes, h, w, c), dtype=np.uint8)
    return images, balanced_labels(num_classes, n_per_class)


# ---------------------------------------------------------------------- features
class FeatureExtractor(nn.Module):
    """A trained classifier's penultimate features: the input of its last `nn.Linear`.

    Takes uint8 (0..255) or float ([0, 1]) N x C x H x W images, as torchmetrics passes them,
    and returns N x `num_features`. Always in eval mode and without gradients.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("the model has no nn.Linear layer to take features from")
        self.model = model.eval()
        self.num_features = linears[-1].in_features
        self._out: torch.Tensor | None = None
        self._listening = False
        linears[-1].register_forward_pre_hook(self._grab)

    def _grab(self, module: nn.Module, args: tuple) -> None:
        if self._listening:  # the model may also be used on its own (predict, gate)
            self._out = args[0]

    def train(self, mode: bool = True):
        return super().train(False)  # a fixed feature network: eval, whatever `mode`

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        x = x.to(device)
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        self._listening = True
        try:
            self.model(x)
        finally:
            self._listening = False
        out, self._out = self._out, None
        return out.flatten(1)


def features(extractor: FeatureExtractor, images: np.ndarray, device: torch.device,
             batch_size: int = 512) -> torch.Tensor:
    """Features (float64 N x d, CPU) of uint8 N x H x W x C images."""
    extractor.to(device)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    out = [extractor(x[i:i + batch_size].to(device)).double().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, extractor.num_features, dtype=torch.float64)


def imagenet_extractor(shape: tuple[int, int, int],
                       device: torch.device) -> tuple[FeatureExtractor | None, str]:
    """EfficientNet-Lite0 ImageNet features (the pooled 1280-d vector before its classifier),
    or None; the string says which weights file, or why there are none.

    pipeline.classifiers.transfer's wrapper adapts the input: gray -> RGB, bilinear resize to 64 px, and
    the normalisation these weights were trained with (Lite0's (x - 0.5) / 0.5).
    """
    from pipeline.core.errors import SynthaugError
    from pipeline.classifiers.transfer import build_transfer

    if shape[0] not in (1, 3):
        return None, f"ImageNet features need 1- or 3-channel images (got {shape[0]})"
    try:
        model, source = build_transfer("efficientnet_lite0", 1, input_size=LITE0_SIZE,
                                       strategy="linear_probe")
    except (SynthaugError, ImportError, OSError) as e:
        return None, str(e)
    return FeatureExtractor(model.to(device)), source or ""


# ---------------------------------------------------------------------- FID / KID
class _Precomputed(nn.Module):
    """Identity over precomputed features: what torchmetrics calls its feature network."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid_kid(real_feats: torch.Tensor, fake_feats: torch.Tensor, kid_subset_size: int,
            seed: int, kid_subsets: int = 100) -> dict:
    """FID and KID (mean, std over `kid_subsets` random subsets) between two feature sets.

    KID's subset size shrinks to the smaller set's size; its subsets are drawn from a torch
    generator seeded with `seed`, so the result is deterministic.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = torch.as_tensor(real_feats).double(), torch.as_tensor(fake_feats).double()
    if min(len(real), len(fake)) < 2:
        raise ValueError("FID/KID need at least 2 images in each set")
    d = real.shape[1]
    fid = FrechetInceptionDistance(feature=_Precomputed(d))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    subset = min(kid_subset_size, len(real), len(fake))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=_Precomputed(d), subsets=kid_subsets,
                                      subset_size=subset)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


# ---------------------------------------------------------------------- PRDC
def _kth_radius(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest OTHER row (self is the 0 at rank 1)."""
    return torch.cat([torch.cdist(x[i:i + chunk], x).kthvalue(k + 1, dim=1).values
                      for i in range(0, len(x), chunk)])


def prdc(real_feats: torch.Tensor, fake_feats: torch.Tensor, k: int, chunk: int = 1024,
         outliers: float = 0.0) -> dict:
    """Precision, recall (Kynkaanniemi et al. 2019) and density, coverage (Naeem et al. 2020).

    With r(x) the distance from x to its k-th nearest neighbour within its own set and B(x, r)
    the closed ball:
    precision = share of fakes inside some B(real, r(real)), leaving out the balls of the
                `outliers` share of reals with the largest radii: an outlier's ball is wide
                enough to hold images that look like nothing (uniform noise scored 0.75 in
                the judge's features), the weakness Naeem et al. point out; Kynkaanniemi
                et al.'s realism score prunes such balls the same way;
    recall    = share of reals inside some B(fake, r(fake));
    density   = 1/(k M) * sum over fakes of the number of balls B(real, r(real)) holding it;
    coverage  = share of reals whose ball B(real, r(real)) holds at least one fake.
    """
    real = torch.as_tensor(real_feats).double()
    fake = torch.as_tensor(fake_feats).double()
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"prdc needs more than k={k} samples per set "
                         f"(got {len(real)} real, {len(fake)} fake)")
    r_real, r_fake = _kth_radius(real, k, chunk), _kth_radius(fake, k, chunk)
    # the balls precision counts: all but the `outliers` share with the largest radii
    kept = r_real <= torch.quantile(r_real, 1.0 - outliers) if outliers else torch.ones_like(r_real, dtype=torch.bool)
    precise = density = 0
    recalled = torch.zeros(len(real), dtype=torch.bool)
    nearest_fake = torch.full((len(real),), math.inf, dtype=torch.float64)
    for i in range(0, len(fake), chunk):
        d = torch.cdist(real, fake[i:i + chunk])  # N x chunk
        inside = d <= r_real[:, None]
        precise += int(inside[kept].any(0).sum())
        density += int(inside.sum())
        recalled |= (d <= r_fake[None, i:i + chunk]).any(1)
        nearest_fake = torch.minimum(nearest_fake, d.min(1).values)
    return {"precision": precise / len(fake), "recall": float(recalled.double().mean()),
            "density": density / (k * len(fake)),
            "coverage": float((nearest_fake <= r_real).double().mean())}


# ---------------------------------------------------------------------- memorisation
def _flat(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).reshape(len(images), -1).float() / 255


def _nearest(a: np.ndarray, b: np.ndarray, skip_self: bool,
             chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    fa, fb = _flat(a), _flat(b)
    nb = (fb * fb).sum(1)
    dist, index = np.empty(len(fa)), np.empty(len(fa), dtype=np.int64)
    for i in range(0, len(fa), chunk):
        x = fa[i:i + chunk]
        d2 = (x * x).sum(1, keepdim=True) + nb[None] - 2 * x @ fb.T  # float32: for the argmin
        if skip_self:
            rows = torch.arange(len(x))
            d2[rows, rows + i] = math.inf
        idx = d2.argmin(1)
        # the exact distance of the chosen pair, in float64
        dist[i:i + len(x)] = (x.double() - fb[idx].double()).square().mean(1).sqrt().numpy()
        index[i:i + len(x)] = idx.numpy()
    return dist, index


def nearest_train(fake: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each fake image's nearest training image in pixel space: (RMS distance in [0, 1] units,
    training index). Chunked: memory ~ the two image sets in float32 + 256 x len(train)."""
    if fake.shape[1:] != train.shape[1:]:
        raise ValueError(f"image shapes differ: {fake.shape[1:]} vs {train.shape[1:]}")
    return _nearest(fake, train, skip_self=False)


def train_radius(train: np.ndarray) -> np.ndarray:
    """Each training image's RMS distance to its nearest OTHER training image."""
    if len(train) < 2:
        raise ValueError("train_radius needs at least 2 training images")
    return _nearest(train, train, skip_self=True)[0]


def near_copies(dist: np.ndarray, idx: np.ndarray, radius: np.ndarray,
                copy_threshold: float) -> np.ndarray:
    """Near-copy mask: closer to the nearest training image than copy_threshold x that
    image's own nearest-neighbour distance."""
    return np.asarray(dist) < copy_threshold * np.asarray(radius)[np.asarray(idx)]


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
    train_feats: torch.Tensor
    train_lite0: torch.Tensor | None
    radius: np.ndarray  # train_radius of the train split
    reference: dict  # judge_agreement on the real test split: the real reference per class

    @property
    def judge_test_accuracy(self) -> float:
        return self.reference["accuracy"]

    @classmethod
    def build(cls, train, val, test, judge: nn.Module, q: QualityConfig, recipe: TrainConfig,
              custom_models: dict, device: torch.device,
              class_names: list[str] | None = None) -> QualityContext:
        """train/val/test: packed data sets (anything with .images and .labels) or
        (images, labels) pairs; class names from `train.class_names` unless given."""
        tr, va, te = _xy(train), _xy(val), _xy(test)
        names = list(class_names or getattr(train, "class_names", None)
                     or [str(c) for c in range(int(tr[1].max()) + 1)])
        judge = judge.to(device).eval()
        domain = FeatureExtractor(judge)
        if q.imagenet_features:
            lite0, note = imagenet_extractor((tr[0].shape[3], *tr[0].shape[1:3]), device)
        else:
            lite0, note = None, "quality.imagenet_features is off"
        return cls(q, recipe, custom_models, device, names, judge, domain, lite0, note, tr, va,
                   te, features(domain, tr[0], device),
                   features(lite0, tr[0], device) if lite0 is not None else None,
                   train_radius(tr[0]), judge_agreement(judge, *te, device, names))


def equal_size(feats: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """At most n rows of feats, a seeded random subset. Recall and coverage grow with the
    number of fakes (more balls, more chances to hit a real one): every set is scored at the
    real val split's size, so that it compares with the real-val row."""
    if len(feats) <= n:
        return feats
    keep = np.sort(np.random.default_rng(seed).choice(len(feats), n, replace=False))
    return feats[torch.from_numpy(keep)]


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def assess(name: str, images: np.ndarray, labels: np.ndarray, ctx: QualityContext,
           select: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """All metrics of one labelled set against the real train split.

    Keys: name, images, fid_domain, kid_domain, kid_domain_std, fid_lite0 (None without
    ImageNet features), precision, recall, density, coverage, cas, cas_ratio (CAS / the judge's
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
    row.update(prdc(ctx.train_feats, equal_size(feats, len(ctx.val[1]), q.seed), q.k,
                    outliers=q.outlier_radii))
    lap("domain")
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
                    ctx.device, q.seed)
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
