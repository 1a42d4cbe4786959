"""Statistics over seeds: mean with a t-based 95% confidence interval, a paired test of
each variant against real-only on the same seeds (the seed fixes initialisation and batch
order, so pairing by seed removes that shared noise), and the power of that test: the
minimum detectable effect (MDE) of the design and the seeds a given effect needs.

MDE of a two-sided paired t-test over n seeds at level alpha and power 1 - beta, from the
observed standard deviation s_d of the paired differences:

    MDE = (t_{1-alpha/2, n-1} + t_{1-beta, n-1}) * s_d / sqrt(n)

the usual t approximation of the noncentral-t power (Cohen 1988, Statistical Power
Analysis, ch. 2; Julious 2004, Stat. Med. 23:1921-1986). A true
difference of MDE is found significant with probability ~ 1 - beta; a non-significant result
with a large MDE decides nothing. `seeds_needed` solves the same formula for n."""
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


def mean_ci(values, level: float = 0.95, within: tuple[float, float] | None = None) -> Summary:
    """Mean and t-based `level` interval; `within` (accuracies: (0, 1)) clips the interval
    to the values' possible range."""
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
    low, high = mean - half, mean + half
    if within is not None:
        low, high = max(low, within[0]), min(high, within[1])
    return Summary(n, mean, low, high, std)


@dataclass
class Paired:
    n: int
    mean_diff: float  # variant - baseline
    low: float
    high: float
    p_value: float  # two-sided paired t-test; nan when it cannot be computed
    significant: bool
    sd_diff: float = float("nan")  # SD of the paired differences (ddof 1); nan with one seed
    mde: float = float("nan")  # minimum detectable effect (80% power, alpha 0.05)
    seeds_needed: int | None = None  # seeds for 80% power at the observed mean difference

    def decided(self, small: float) -> bool:
        """Whether the data decides this comparison: significant, or not significant with
        an MDE of at most `small` (then no difference of that size is likely)."""
        return self.significant or (not math.isnan(self.mde) and self.mde <= small)


ALPHA, POWER = 0.05, 0.80
MAX_SEEDS = 1000  # seeds_needed beyond this reads "more than MAX_SEEDS"


def mde(sd_diff: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect of a two-sided paired t-test over n pairs (module docstring);
    nan for n < 2 or an undefined SD."""
    from scipy import stats

    if n < 2 or sd_diff is None or math.isnan(sd_diff):
        return float("nan")
    df = n - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd_diff / math.sqrt(n))


def seeds_needed(effect: float, sd_diff: float, alpha: float = ALPHA, power: float = POWER,
                 most: int = MAX_SEEDS) -> int | None:
    """The smallest n >= 2 whose MDE (same SD) is at most |effect|: the seeds a true
    difference of `effect` needs to be found with probability `power`. None when even `most`
    seeds would not do (or the SD is undefined); 2 when the SD is 0."""
    if sd_diff is None or math.isnan(sd_diff) or math.isnan(effect):
        return None
    if sd_diff == 0:
        return 2
    effect = abs(effect)
    if effect == 0 or mde(sd_diff, most, alpha, power) > effect:
        return None
    lo, hi = 2, most  # mde falls with n: bisect for the first n with mde <= effect
    while lo < hi:
        mid = (lo + hi) // 2
        if mde(sd_diff, mid, alpha, power) <= effect:
            hi = mid
        else:
            lo = mid + 1
    return lo


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
    sd = s.std if len(d) > 1 else float("nan")
    return Paired(len(d), s.mean, s.low, s.high, p, bool(not math.isnan(p) and p < alpha), sd,
                  mde(sd, len(d), alpha), seeds_needed(s.mean, sd, alpha))


def corrected_mde(sd_diff: float, n: int, rho: float, alpha: float = ALPHA,
                  power: float = POWER) -> float:
    """The MDE of `corrected_test` over n units: as `mde`, with 1/n replaced by 1/n + rho."""
    from scipy import stats

    if n < 2 or sd_diff is None or math.isnan(sd_diff):
        return float("nan")
    df = n - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd_diff
                 * math.sqrt(1 / n + rho))


def corrected_test(variant, baseline, rho: float, alpha: float = ALPHA,
                   most: int = MAX_SEEDS) -> Paired:
    """Paired t-test over the units of a (repeated) k-fold cross-validation with the
    variance corrected for the overlap of the units' training sets (Nadeau and Bengio 2003,
    "Inference for the generalization error", Mach. Learn. 52:239-281; as Bouckaert and
    Frank 2004's corrected repeated k-fold test): var = (1/n + rho) s^2, rho = test images /
    training images of a unit (1/(folds - 1) for k-fold). `seeds_needed` is here the units
    (folds x repeats) the observed difference would need for 80% power at this rho; None
    when no number of repeats can reach it (the rho term does not shrink with repeats: only
    more labelled images can decide it)."""
    from scipy import stats

    a, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same units: {a.shape} vs {b.shape}")
    d = a - b
    n, mean = len(d), float(d.mean())
    if n < 2:
        return Paired(n, mean, mean, mean, float("nan"), False)
    sd = float(d.std(ddof=1))
    se = sd * math.sqrt(1 / n + rho)
    if se == 0:
        p = 0.0 if mean != 0 else float("nan")
        low = high = mean
    else:
        half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * se
        low, high = mean - half, mean + half
        p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    needed = None
    if sd == 0:
        needed = 2
    elif mean != 0 and corrected_mde(sd, most, rho, alpha) <= abs(mean):
        lo, hi = 2, most
        while lo < hi:
            mid = (lo + hi) // 2
            if corrected_mde(sd, mid, rho, alpha) <= abs(mean):
                hi = mid
            else:
                lo = mid + 1
        needed = lo
    return Paired(n, mean, low, high, p, bool(not math.isnan(p) and p < alpha), sd,
                  corrected_mde(sd, n, rho, alpha), needed)
