"""The exchange rate: a variant read off the real-only accuracy curve, with its edges."""
import math

import pytest

from synthaug.pipeline.stats.exchange import ABOVE, BELOW, WITHIN, exchange_rate, invert, monotone_curve

CURVE = {5: [0.70, 0.72, 0.71], 10: [0.80, 0.82, 0.81], 20: [0.88, 0.90, 0.89],
         50: [0.93, 0.95, 0.94]}


def test_a_point_on_the_curve_is_worth_its_k():
    r = exchange_rate(CURVE, [0.88, 0.90, 0.89])
    assert r.where == WITHIN and r.k == pytest.approx(20)
    assert r.low <= 20 <= r.high


def test_between_points_interpolates_in_log_k():
    r = exchange_rate(CURVE, [0.845, 0.855, 0.85])  # halfway between 10 and 20 in accuracy
    assert r.where == WITHIN and r.k == pytest.approx(math.sqrt(10 * 20), rel=1e-6)
    assert r.text(50).startswith("worth 14 real images per class (95% CI ")
    assert r.text(50).endswith("; -36)")


def test_below_and_above_the_curve_are_said_as_such():
    below = exchange_rate(CURVE, [0.60, 0.61, 0.62])
    above = exchange_rate(CURVE, [0.98, 0.99, 0.98])
    assert below.where == BELOW and below.k is None and "fewer than 5" in below.text()
    assert above.where == ABOVE and above.k is None and "more than 50" in above.text()


def test_a_dip_in_the_curve_is_smoothed_to_a_monotone_fit():
    ks, acc = monotone_curve([5, 10, 20], [0.8, 0.7, 0.9])  # noise: k=10 below k=5
    assert list(acc) == sorted(acc) and acc[0] == acc[1] == pytest.approx(0.75)
    k, where = invert(ks, acc, 0.75)
    assert where == WITHIN and k == pytest.approx(5)  # the smallest k reaching it


def test_interval_widens_with_seed_noise_and_open_ends_show():
    tight = exchange_rate(CURVE, [0.85, 0.85, 0.85])
    noisy = {k: [v[0] - 0.06, v[1], v[2] + 0.06] for k, v in CURVE.items()}
    wide = exchange_rate(noisy, [0.79, 0.85, 0.91])
    assert (wide.high - (wide.low or 5)) > (tight.high - tight.low)
    near_top = exchange_rate(noisy, [0.90, 0.94, 0.98])
    assert near_top.high is None and ">50" in near_top.text()


def test_unpaired_seeds_and_bad_input():
    r = exchange_rate({5: [0.7], 10: [0.8, 0.82]}, [0.75, 0.76, 0.74])
    assert r.where == WITHIN and 5 < r.k < 10
    with pytest.raises(ValueError, match="two or more k"):
        exchange_rate({5: [0.7]}, [0.7])
    with pytest.raises(ValueError, match="at least one seed"):
        exchange_rate({5: [0.7], 10: []}, [0.7])
