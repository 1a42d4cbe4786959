"""The small-data protocol: the rule that picks k-fold, the stratified partition (every
labelled image tested once per repeat, the test fold untouched by training and selection),
the corrected repeated k-fold test, the crossval stage end to end on a tiny folder and the
report's section."""
import json
import math

import numpy as np
import pytest
import yaml

from synthaug.pipeline.experiments.crossval import unit_k
from synthaug.pipeline.experiments.protocol import (MIN_TEST_PER_CLASS, choose, fold_split,
                                                    partition)
from synthaug.pipeline.stats.paired import corrected_mde, corrected_test, paired_test


def test_the_rule_picks_kfold_below_the_test_threshold_and_names_itself():
    assert choose("auto", np.array([100, 90]))[0] == "holdout"
    protocol, why = choose("auto", np.array([40, MIN_TEST_PER_CLASS - 1]))
    assert protocol == "kfold" and f"only {MIN_TEST_PER_CLASS - 1} image(s)" in why
    assert choose("holdout", np.array([1]))[0] == "holdout"  # an explicit setting wins
    assert choose("kfold", np.array([500]))[0] == "kfold"


def test_every_image_is_tested_once_per_repeat_in_stratified_folds():
    labels = np.repeat(np.arange(4), [13, 9, 20, 7])
    fold_of = partition(labels, folds=5, repeats=3, seed=7)
    assert fold_of.shape == (3, len(labels)) and set(np.unique(fold_of)) == set(range(5))
    for r in range(3):
        for c in range(4):  # stratified: each class spread over the folds within one image
            per_fold = np.bincount(fold_of[r][labels == c], minlength=5)
            assert per_fold.max() - per_fold.min() <= 1
    assert not np.array_equal(fold_of[0], fold_of[1])  # a fresh partition per repeat
    assert np.array_equal(fold_of, partition(labels, 5, 3, 7))  # seeded


def test_a_unit_trains_and_selects_without_its_test_fold():
    labels = np.repeat(np.arange(3), 16)
    fold_of = partition(labels, folds=4, repeats=1, seed=0)[0]
    tested = []
    for f in range(4):
        pool, val, test = fold_split(labels, fold_of, f, val_fraction=0.1, seed=0)
        assert not (set(pool) | set(val)) & set(test)
        assert not set(pool) & set(val)
        assert len(pool) + len(val) + len(test) == len(labels)
        assert set(np.unique(labels[val])) == {0, 1, 2}  # at least one val image per class
        tested += test.tolist()
    assert sorted(tested) == list(range(len(labels)))  # each image in exactly one test fold
    k, counts = unit_k("auto", labels[pool], ["a", "b", "c"])
    assert k == counts.min() // 2  # auto: half the smallest class, as prepare resolves it


def test_the_corrected_test_widens_the_interval_by_the_overlap_of_training_sets():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.7, 0.8, 5)
    variant = base + 0.02 + rng.normal(0, 0.01, 5)
    plain = paired_test(variant, base)
    t = corrected_test(variant, base, rho=0.25)
    assert t.mean_diff == pytest.approx(plain.mean_diff)
    # se = sd * sqrt(1/n + rho) instead of sd * sqrt(1/n)
    ratio = math.sqrt(1 / 5 + 0.25) / math.sqrt(1 / 5)
    assert (t.high - t.low) == pytest.approx((plain.high - plain.low) * ratio)
    assert t.p_value > plain.p_value
    assert t.mde == pytest.approx(corrected_mde(t.sd_diff, 5, 0.25)) and t.mde > plain.mde
    # the rho term is a floor no number of repeats removes: a tiny effect is never decided
    assert corrected_test(base + 1e-4 + rng.normal(0, 0.01, 5), base, rho=0.25).seeds_needed is None
    assert corrected_test(variant, base, rho=0.25).seeds_needed >= 2


@pytest.fixture
def small_folder(tmp_path, run_cli, repo_root):
    """A 3-class RGB folder of 15 odd-sized images per class (test split: 3 per class)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, channel in zip("abc", range(3)):
        (tmp_path / "images" / c).mkdir(parents=True)
        for i in range(15):
            px = rng.integers(0, 120, (11 + i % 3, 13, 3), dtype=np.uint8)
            px[..., channel] = 230  # a class is its colour
            Image.fromarray(px).save(tmp_path / "images" / c / f"i{i}.png")
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["prepare"].update(source="folder:images", size=12, channels=3)
    params["train"].update(epochs=1, batch_size=8, epoch_size=64, patience=0)
    params["study"].update(models=["cnn"], variants=["real", "real+classic", "more-real"],
                           folds=3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_cli(tmp_path, "prepare").exit_code == 0
    return tmp_path


def test_the_stage_cross_validates_a_small_folder(small_folder, run_cli):
    r = run_cli(small_folder, "crossval", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "auto chose k-fold" in r.output
    rec = json.loads((small_folder / "metrics/crossval/results.json").read_text())
    assert rec["protocol"] == "kfold" and rec["folds"] == 3 and rec["labelled"] == 45
    tested = sorted(i for u in rec["units"] for i in u["test_index"])
    assert tested == list(range(45))  # every labelled image tested once
    assert len(rec["rows"]) == 3 * 3  # units x variants x models
    # augment.pipeline auto: each unit chose its preset on its own val split (no augment
    # stage output exists here to borrow a choice from)
    assert not (small_folder / "data/augmented").exists()
    candidates = yaml.safe_load((small_folder / "params.yaml").read_text())["augment"]["candidates"]
    assert all(u["classic"] in candidates for u in rec["units"])
    for row in rec["rows"]:
        unit = next(u for u in rec["units"] if u["fold"] == row["fold"])
        assert len(row["pred"]) == len(unit["test_index"])
        acc = np.mean(np.asarray(row["pred"]) == np.asarray(unit["labels"]))
        assert row["accuracy"] == pytest.approx(acc)
    first = (small_folder / "metrics/crossval/results.json").read_text()
    assert run_cli(small_folder, "crossval", "--no-progress").exit_code == 0
    again = json.loads((small_folder / "metrics/crossval/results.json").read_text())
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]  # noqa: E731
    assert strip(again["rows"]) == strip(json.loads(first)["rows"])  # deterministic

    # the report's pieces: a row per variant, a verdict and an MDE for each comparison
    from synthaug.pipeline.report import crossval

    rows = crossval.summarise(rec)
    assert [r["variant"] for r in rows] == ["real", "real+classic", "more-real"]
    for r in rows[1:]:
        assert r["images"]["tested"] == 45 and "mde" in r["vs_real"]
    text = "\n".join(crossval.section(rec, rows, {"crossval.png"}))
    assert "45 labelled images was tested once per repeat" in text
    assert "figures/crossval.png" in text and "| real+classic | cnn |" in text
    out = crossval.results(rows, rec)
    assert out["protocol"]["protocol"] == "kfold"
    assert set(out["crossval/more-real/cnn"]) >= {"gain_vs_real", "mde_vs_real", "p_vs_real"}


def test_holdout_on_larger_data_trains_nothing_and_says_why(small_folder, run_cli):
    r = run_cli(small_folder, "crossval", "--no-progress", "-S", "study.protocol=holdout")
    assert r.exit_code == 0, r.output
    rec = json.loads((small_folder / "metrics/crossval/results.json").read_text())
    assert rec["protocol"] == "holdout" and rec["rows"] == [] and rec["folds"] == 0
    from synthaug.pipeline.report import crossval

    assert crossval.answer(rec, []) is None
    assert "Holdout: every accuracy is on the prepared test split (the rule: " in "\n".join(
        crossval.section(rec, [], set()))


def test_models_that_agree_on_every_test_image_are_not_a_decided_zero():
    """Two models that predict alike in every unit differ by exactly 0 with no spread: the
    t-test's MDE would read 0 and call it decided. The bound is what 200 agreeing images can
    rule out: 1 - 0.05 ** (1 / 200), 1.5 points, so the row stays undecided."""
    from synthaug.pipeline.report import crossval

    rng = np.random.default_rng(0)
    units, rows = [], []
    for fold in range(5):
        labels = rng.integers(0, 2, 40)
        pred = labels.copy()
        pred[:fold % 3] ^= 1  # a few misses, the same for both models
        units.append({"repeat": 0, "fold": fold, "labels": labels.tolist()})
        for variant in ("real", "real+classic"):
            rows.append({"variant": variant, "model": "cnn", "repeat": 0, "fold": fold,
                         "pred": pred.tolist(), "accuracy": float(np.mean(pred == labels)),
                         "macro_f1": 0.9})
    rec = {"units": units, "rows": rows, "folds": 5, "repeats": 1, "labelled": 200,
           "variants": ["real", "real+classic"], "models": ["cnn"], "train_images": 160}
    vs = crossval.summarise(rec)[1]["vs_real"]
    assert vs["mean_diff"] == 0 and not vs["decided"]
    assert vs["mde"] == pytest.approx(1 - 0.05 ** (1 / 200))
    assert crossval.verdict(vs) == "not decided by this data (MDE 1.5 points)"


def test_an_undecided_row_says_what_would_decide_it():
    from synthaug.pipeline.report.crossval import decide_text

    repeats = decide_text({"mean_diff": 0.02, "mde": 0.03, "seeds_needed": 12}, 5, 1, 300)
    assert "about 3 repeats of 5 folds (`-S study.repeats=3`)" in repeats
    images = decide_text({"mean_diff": 0.01, "mde": 0.04, "seeds_needed": None}, 5, 1, 300)
    assert "no number of repeats" in images and "16x the labelled images (about 4800)" in images


@pytest.mark.cluster
def test_the_units_as_ray_tasks_give_the_local_pool_rows(small_folder, run_cli):
    """The crossval stage's jobs as cells of a local Ray: the rows (predictions included) of
    the local pool, bit for bit but for the wall-clock seconds."""
    pytest.importorskip("ray")
    out = small_folder / "metrics/crossval/results.json"
    rows = []
    for engine in ([], ["-S", "executor.kind=ray", "-S", "executor.ray.local_cpus=2"]):
        r = run_cli(small_folder, "crossval", "--no-progress", *engine)
        assert r.exit_code == 0, r.output
        rows.append([{k: v for k, v in row.items() if k != "train_seconds"}
                     for row in json.loads(out.read_text())["rows"]])
    assert rows[0] == rows[1]


def test_check_plans_the_units_fits_generators_and_classic_choices():
    from synthaug.pipeline.augment.config import AugmentConfig
    from synthaug.pipeline.data.config import ComposeConfig
    from synthaug.pipeline.experiments.config import StudyConfig
    from synthaug.pipeline.experiments.plan import Plan, with_crossval

    def plan(test, protocol="auto", pipeline="auto"):
        return with_crossval(Plan({}, {}, {}, {}), StudyConfig(protocol=protocol, repeats=2),
                             ComposeConfig(), {"gan": 100, "vae": 50, "diffusion": 10},
                             {"gan-prior": "gan", "vae-prior": "vae", "diffusion-ddim": "diffusion",
                              "vae-jitter": "vae"}, test, AugmentConfig(pipeline=pipeline))

    assert plan(np.array([100, 100])).crossval == {}  # holdout: nothing to plan
    assert "decided once the splits are known" in plan(None).protocol
    p = plan(np.array([9, 12]))
    units, variants = 5 * 2, len(StudyConfig().variants)
    candidates = len(AugmentConfig().candidates) * len(AugmentConfig().choose_seeds)
    assert p.crossval == {"cnn": units * (variants + candidates),
                          "efficientnet_lite0": units * variants}
    assert p.crossval_generators == {"diffusion": 10 * units, "gan": 100 * units, "vae": 50 * units}
    assert plan(np.array([9, 12]), pipeline="medium").crossval["cnn"] == units * variants


def test_check_prices_a_fixmatch_when_point_as_several_fits():
    from synthaug.pipeline.data.config import ComposeConfig
    from synthaug.pipeline.experiments.config import StudyConfig, SweepConfig
    from synthaug.pipeline.data.config import SEMI_FIT_COST
    from synthaug.pipeline.experiments.plan import estimate, make_plan

    compose = ComposeConfig()
    assert compose.variants["fixmatch"].use.semi_supervised == "fixmatch"

    def seconds(variants):
        sweep = SweepConfig(models=["cnn"], real_per_class=[10], ratios=[], when_per_class=[10],
                            when_variants=variants, when_models=["cnn"])
        plan = make_plan(StudyConfig(models=["cnn"]), sweep, compose, {}, {}, None, None)
        machine = {"usable_cores": 2, "isa": {"avx512_bf16": True}}
        return plan, estimate(plan, {"cnn": (6 * 1024, 28, False)}, 28, machine, {})[0]

    plain, t_plain = seconds(["real+classic"])
    semi, t_semi = seconds(["fixmatch"])
    assert semi.when == plain.when and semi.when_semi == {"cnn": 5}  # 5 low-data seeds
    fit = 2.4  # the cnn's reference fit (plan.FIT_SECONDS), spread over 2 workers
    assert t_semi - t_plain == pytest.approx(5 * (SEMI_FIT_COST - 1) * fit / 2)


def test_more_folds_than_a_class_has_images_is_one_line_naming_the_setting():
    from synthaug.pipeline.core.errors import SynthaugError

    with pytest.raises(SynthaugError, match=r"study.folds: 6 stratified folds .* has 5; set "
                                            r"study.folds to 5 or less"):
        partition(np.repeat([0, 1], [9, 5]), folds=6, repeats=1, seed=0)
