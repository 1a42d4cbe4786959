"""Power of the study's comparisons: the minimum detectable effect (MDE) of the paired t-test
over seeds, the seeds an effect needs, the report's wording of decided / not decided results
and the forest plot of paired differences."""
import math

import numpy as np
import pytest

from synthaug.pipeline.stats.paired import mde, paired_test, seeds_needed


def _power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Exact power of the two-sided paired t-test (noncentral t), for the check."""
    from scipy import stats

    df, ncp = n - 1, effect / (sd / math.sqrt(n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(1 - stats.nct.cdf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def test_mde_formula_against_t_quantiles_and_noncentral_t_power():
    # (t_.975,2 + t_.80,2) / sqrt(3) = (4.3027 + 1.0607) / 1.7321
    assert mde(1.0, 3) == pytest.approx(3.0965, abs=1e-4)
    # large n: the normal table's (1.960 + 0.842) / sqrt(n)
    assert mde(1.0, 10_000) * 100 == pytest.approx(2.8016, abs=2e-3)
    assert mde(0.02, 5) == pytest.approx(0.02 * mde(1.0, 5))  # linear in the SD
    # the t approximation of the noncentral-t power: a true effect of MDE has ~80% power
    for n in (5, 10, 30):
        assert _power(mde(1.0, n), 1.0, n) == pytest.approx(0.80, abs=0.03)
    assert math.isnan(mde(1.0, 1)) and math.isnan(mde(float("nan"), 3))


def test_seeds_needed_inverts_the_mde():
    n = seeds_needed(0.008, 0.00643)
    assert n == 8 and mde(0.00643, n) <= 0.008 < mde(0.00643, n - 1)
    assert seeds_needed(-0.008, 0.00643) == 8  # the size of the effect, not its sign
    assert seeds_needed(1e-6, 0.01) is None  # beyond MAX_SEEDS
    assert seeds_needed(0.01, 0.0) == 2 and seeds_needed(0.01, float("nan")) is None


def test_paired_test_carries_its_power():
    t = paired_test([0.93, 0.94, 0.95], [0.94, 0.945, 0.96])
    d = np.array([-0.01, -0.005, -0.01])
    assert t.sd_diff == pytest.approx(d.std(ddof=1))
    assert t.mde == pytest.approx(mde(d.std(ddof=1), 3))
    assert t.seeds_needed == seeds_needed(d.mean(), d.std(ddof=1))
    one = paired_test([0.9], [0.8])
    assert math.isnan(one.mde) and one.seeds_needed is None and not one.decided(0.01)


def _study(real, jitter, control):
    from synthaug.pipeline.experiments.config import StudyConfig
    from synthaug.pipeline.report.study import Study

    cells = {(v, "cnn", sd): {"accuracy": a, "macro_f1": a, "history": []}
             for v, accs in {"real": real, "real+vae-jitter": jitter, "more-real": control}.items()
             for sd, a in enumerate(accs)}
    return Study(study=StudyConfig(variants=["real", "real+vae-jitter", "more-real"],
                                   models=["cnn"], seeds=[0, 1, 2]), cells=cells,
                 train_per_class=50)


def _answer(s):
    from synthaug.pipeline.report import results, when

    rows = results.summarise(s)
    return rows, when.answer(s, rows)


def test_a_wide_non_significant_result_reads_not_decided_with_the_seeds_it_needs():
    rows, text = _answer(_study([.94, .95, .94], [.92, .955, .93], [.95, .945, .97]))
    vs = rows[1]["vs_real"]
    assert not vs["significant"] and not vs["decided"] and vs["mde"] > 0.01
    assert f"not decided by this data (MDE {100 * vs['mde']:.1f} points)" in text
    assert f"more seeds ({vs['seeds_needed']} in all) would find a difference" in text
    assert "does not differ" not in text and "little room" not in text
    assert "no difference" not in text
    table = __import__("synthaug.pipeline.report.results", fromlist=["table"]).table(rows)
    assert f"| {100 * vs['mde']:.1f} not decided |" in table


def test_a_tight_non_significant_result_is_decided_and_the_control_had_little_room():
    rows, text = _answer(_study([.940, .950, .945], [.941, .948, .9455], [.941, .951, .9448]))
    vs = rows[1]["vs_real"]
    assert not vs["significant"] and vs["decided"] and vs["mde"] <= 0.01
    assert "does not differ from real-only by as much as its MDE" in text
    assert "no gain as large as its MDE: at this k even perfect synthetic images had little room" in text
    assert "not decided" not in text


def test_significant_results_read_as_such():
    _, text = _answer(_study([.94, .95, .94], [.93, .94, .935], [.955, .96, .958]))
    assert "`real+vae-jitter`, loses to real-only: -0.8 points" in text and "MDE" in text
    assert "a gain the harness detects" in text


def test_an_undecided_exchange_rate_is_no_finding():
    from synthaug.pipeline.report import results
    from synthaug.pipeline.stats.exchange import exchange_rate

    curve = {5: [0.70, 0.71, 0.72], 10: [0.80, 0.81, 0.82], 20: [0.88, 0.89, 0.90]}
    rate = exchange_rate(curve, [0.845, 0.855, 0.85])
    assert rate.text(50).startswith("worth 14 real images per class")
    undecided = rate.text(50, decided=False)
    assert undecided.startswith("its exchange rate is not decided either")
    assert "is no finding" in undecided and "worth" not in undecided and "-36" not in undecided
    row = {"worth": {**rate.as_dict(), "k_used": 50, "decided": False}}
    assert results._worth_cell(row).startswith("not decided (14;")


def test_the_results_json_and_when_points_carry_the_mde():
    from synthaug.pipeline.report import results, when

    s = _study([.94, .95, .94], [.92, .955, .93], [.95, .945, .97])
    rows = results.summarise(s)
    js = results.results_json(rows, {})
    e = js["real+vae-jitter/cnn"]
    assert e["mde_vs_real"] == pytest.approx(rows[1]["vs_real"]["mde"])
    assert e["decided_vs_real"] is False and e["seeds_needed_vs_real"] > 3
    assert {"gain_ci_low", "gain_ci_high", "sd_diff_vs_real"} <= set(e)
    cmp = when.compare({"real": {10: {0: .8, 1: .82, 2: .81}},
                        "more-real": {10: {0: .85, 1: .86, 2: .87}}})
    point = cmp["more-real"][10]
    assert point["mde"] > 0 and "MDE" in when.table(cmp) and point["decided"]
    assert "mde" in when.results({"cnn": cmp})["when/more-real/10/cnn"]


def test_forest_plot_is_written(tmp_path):
    from synthaug.pipeline.figures.results import difference_forest
    from synthaug.pipeline.report import results

    s = _study([.94, .95, .94], [.92, .955, .93], [.955, .96, .958])
    rows = results.summarise(s)
    rows.append({"variant": "real+gan", "model": "eff", "seeds": [0], "values": [0.9]})  # unpaired
    difference_forest(rows, tmp_path / "accuracy.png")
    from PIL import Image

    with Image.open(tmp_path / "accuracy.png") as im:
        assert im.size[0] > 600 and im.size[1] > 250


def test_one_seed_decides_nothing_and_says_how_to_decide():
    """A quick run on one seed: no interval, test or MDE to quote, and the answer says so
    instead of printing a zero-width interval and p nan."""
    rows, text = _answer(_study([.94], [.93], [.95]))
    assert "on one seed: one seed gives no interval, test or minimum detectable effect" in text
    assert "study.seeds=[0,1,2]" in text
    assert "p nan" not in text and "95% CI +0.0 to +0.0" not in text
