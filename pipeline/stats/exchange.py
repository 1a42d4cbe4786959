"""The exchange rate: what a training set is worth in real images per class.

Real-only training at k real images per class gives an accuracy curve acc(k) (the sweep's
`real_per_class` points plus the study's own k). A variant's accuracy is read off that curve
backwards: the k at which real-only training would match it. The curve is made monotone
(isotonic regression of the seed means, scipy) and interpolated linearly in log k, so
the inverse is unique; the 95% interval comes from a bootstrap over seeds (paired when the
curve and the variant share their seeds, as the study's cells do).

A variant below the smallest k's accuracy is worth "fewer than k_min"; one above the largest
k's is worth "more than k_max": the curve cannot say more, and the rate says so.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

WITHIN, BELOW, ABOVE = "within", "below", "above"
OFF_TOP = 1e6  # a bootstrap draw above the curve counts as this many times the largest k


@dataclass
class Rate:
    k: float | None  # real images per class worth the same; None when off the curve
    low: float | None  # 95% bootstrap interval; None where a bound lies off the curve
    high: float | None
    where: str  # within | below (worse than the smallest k) | above (better than the largest k)
    k_min: int
    k_max: int

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self, k_used: int | None = None, decided: bool = True) -> str:
        """`worth 38 real images per class (95% CI 30-45; -12)`, or the off-curve wording.

        `decided`: whether the accuracy difference behind the rate is significant. A rate
        claims no more than the accuracies it is read from: an undecided one is named as an
        estimate, not stated as what the variant is worth (the curve's bootstrap interval
        leaves out the spread of the comparison itself)."""
        if self.where == BELOW:
            core = f"fewer than {self.k_min} real images per class (below the curve)"
        elif self.where == ABOVE:
            core = f"more than {self.k_max} real images per class (above the largest k)"
        else:
            lo = f"<{self.k_min}" if self.low is None else f"{self.low:.0f}"
            hi = f">{self.k_max}" if self.high is None else f"{self.high:.0f}"
            diff = f"; {self.k - k_used:+.0f}" if k_used is not None and decided else ""
            core = f"{self.k:.0f} real images per class (95% CI {lo}-{hi}{diff})"
        if not decided:
            return ("its exchange rate is not decided either: the estimate, " + core
                    + ", is no finding while the accuracy difference is not significant")
        return f"worth {core}"


def monotone_curve(ks, means) -> tuple[np.ndarray, np.ndarray]:
    """(k, accuracy), sorted by k, of the non-decreasing fit through the means at each k."""
    # scipy's pool-adjacent-violators: the same fit as scikit-learn's IsotonicRegression
    # without its per-call input validation, which took 50 s of the report's bootstrap
    from scipy.optimize import isotonic_regression

    ks, means = np.asarray(ks, dtype=float), np.asarray(means, dtype=float)
    order = np.argsort(ks)
    return ks[order], isotonic_regression(means[order], increasing=True).x


def invert(ks: np.ndarray, acc: np.ndarray, target: float) -> tuple[float | None, str]:
    """The smallest k with curve(k) == target, linear in log k between points."""
    if target < acc[0]:
        return None, BELOW
    if target > acc[-1]:
        return None, ABOVE
    i = int(np.searchsorted(acc, target, side="left"))  # first point >= target
    if i == 0 or acc[i] == target:
        return float(ks[i]), WITHIN
    t = (target - acc[i - 1]) / (acc[i] - acc[i - 1])
    return float(math.exp((1 - t) * math.log(ks[i - 1]) + t * math.log(ks[i]))), WITHIN


def exchange_rate(curve: dict[int, list[float]], variant: list[float], n_boot: int = 2000,
                  seed: int = 0, paired: bool | None = None) -> Rate:
    """`curve`: real-only accuracies per seed at each k; `variant`: the variant's per seed.

    Paired (default when every list has the same length, i.e. the same seeds in the same
    order): each bootstrap draw resamples seed indices once for the curve and the variant.
    """
    if len(curve) < 2:
        raise ValueError("the exchange rate needs real-only results at two or more k")
    ks = sorted(curve)
    if any(not curve[k] for k in ks) or not variant:
        raise ValueError("every k and the variant need at least one seed")
    n = len(variant)
    if paired is None:
        paired = all(len(curve[k]) == n for k in ks)
    kk, acc = monotone_curve(ks, [np.mean(curve[k]) for k in ks])
    k, where = invert(kk, acc, float(np.mean(variant)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        if paired:
            idx = rng.integers(0, n, n)
            means = [np.mean(np.asarray(curve[k_])[idx]) for k_ in ks]
            target = np.mean(np.asarray(variant)[idx])
        else:
            means = [np.mean(rng.choice(curve[k_], len(curve[k_]))) for k_ in ks]
            target = np.mean(rng.choice(variant, n))
        lk, a = monotone_curve(ks, means)
        kb, wb = invert(lk, a, float(target))
        draws.append(0.0 if wb == BELOW else OFF_TOP * ks[-1] if wb == ABOVE else kb)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    # off-curve draws sort to the ends: 0 below, OFF_TOP x k_max above
    low = None if lo < ks[0] else float(lo)
    high = None if hi > ks[-1] else float(hi)
    return Rate(k, low, high, where, ks[0], ks[-1])
