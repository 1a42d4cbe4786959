"""Statistics over seeds: mean with a t-based 95% confidence interval, and a paired test of
each variant against real-only on the same seeds (the seed fixes initialisation and batch
order, so pairing by seed removes that shared noise)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Summary:
    n: int
    mean: float
    low: float  # 95% confidence interval; equal to the mean when n == 1
    high: float
    std: float


def mean_ci(values, level: float = 0.95) -> Summary:
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, mean, mean, 0.0)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, mean - half, mean + half, std)


@dataclass
class Paired:
    n: int
    mean_diff: float  # variant - baseline
    low: float
    high: float
    p_value: float  # two-sided paired t-test; nan when it cannot be computed
    significant: bool


def paired_test(variant, baseline, alpha: float = 0.05) -> Paired:
    """Paired t-test of `variant` vs `baseline` (same seeds, same order)."""
    from scipy import stats

    a, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same seeds: {a.shape} vs {b.shape}")
    d = a - b
    s = mean_ci(d)
    if len(d) < 2 or np.allclose(d, d[0]):
        # no spread: the t statistic is undefined (identical runs, or one seed)
        p = float("nan") if len(d) < 2 or d[0] == 0 else 0.0
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    return Paired(len(d), s.mean, s.low, s.high, p, bool(not math.isnan(p) and p < alpha))
