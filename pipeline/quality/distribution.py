"""Distances between two feature sets: FID/KID and precision/recall/density/coverage.

- `fid_kid`: torchmetrics' FrechetInceptionDistance / KernelInceptionDistance over features
  computed beforehand (pipeline.quality.features), fed through an identity module that
  declares their width.
- `prdc`: precision/recall of k-NN manifolds (Kynkaanniemi et al. 2019) and density/coverage
  (Naeem et al. 2020); balls are closed (distance <= the k-NN radius), as in Kynkaanniemi's
  definition.
- `equal_size`: the seeded subset each set is scored on (the real val split's size): recall and
  coverage grow with the number of fakes.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn


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


def equal_size(feats: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """At most n rows of feats, a seeded random subset. Recall and coverage grow with the
    number of fakes (more balls, more chances to hit a real one): every set is scored at the
    real val split's size, so that it compares with the real-val row."""
    if len(feats) <= n:
        return feats
    keep = np.sort(np.random.default_rng(seed).choice(len(feats), n, replace=False))
    return feats[torch.from_numpy(keep)]
