"""Statistics on known inputs, and the report rendered from a tiny hand-made study."""
import json
import math

import numpy as np
import pytest
import yaml

from synthaug.pipeline.stats.paired import mean_ci, paired_test


def test_mean_ci_matches_the_t_formula():
    s = mean_ci([0.90, 0.92, 0.94])
    # mean 0.92, sd 0.02, t(0.975, 2) = 4.302652729911275
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert s.mean == pytest.approx(0.92) and s.std == pytest.approx(0.02)
    assert (s.low, s.high) == (pytest.approx(0.92 - half), pytest.approx(0.92 + half))
    one = mean_ci([0.5])
    assert (one.n, one.low, one.high) == (1, 0.5, 0.5)
    # accuracies near 100%: the t-interval would pass 1.0; clipped to what an accuracy can be
    wide = mean_ci([1.0, 1.0, 0.975])
    assert wide.high > 1.0
    near = mean_ci([1.0, 1.0, 0.975], within=(0.0, 1.0))
    assert near.high == 1.0 and near.low == pytest.approx(wide.low) and near.mean == wide.mean


def test_paired_test_against_a_hand_computation():
    a, b = [0.95, 0.93, 0.96, 0.94], [0.91, 0.92, 0.93, 0.90]
    d = np.subtract(a, b)  # 0.04 0.01 0.03 0.04: mean 0.03, sd 0.014142
    t = d.mean() / (d.std(ddof=1) / 2)
    from scipy import stats

    p_ref = 2 * stats.t.sf(abs(t), 3)
    r = paired_test(a, b)
    assert r.mean_diff == pytest.approx(0.03) and r.p_value == pytest.approx(p_ref)
    assert r.significant and r.p_value < 0.05
    same = paired_test([0.9, 0.91, 0.92], [0.9, 0.91, 0.92])
    assert same.mean_diff == 0 and not same.significant
    noisy = paired_test([0.90, 0.95, 0.91], [0.93, 0.90, 0.92])
    assert not noisy.significant and noisy.p_value > 0.5
    with pytest.raises(ValueError):
        paired_test([0.9, 0.9], [0.9])


T2 = 4.302652729911275  # t(0.975, 2): the 95% CI half-width factor for three seeds
SETS = ("gan-prior", "gan-truncated", "vae-prior", "vae-jitter", "vae-gmm", "diffusion-ddim",
        "diffusion-img2img")
# sweep stage results: model -> sweep -> value -> accuracy per seed 0, 1, 2
SWEEP = {
    "cnn": {"real_per_class": {5: [0.60, 0.62, 0.64], 10: [0.80, 0.83, 0.83], 20: [0.86, 0.86, 0.87]},
            "ratio": {0.25: [0.90, 0.91, 0.92], 0.5: [0.91, 0.92, 0.93], 2.0: [0.88, 0.89, 0.90]}},
    "efficientnet_lite0": {
        "real_per_class": {5: [0.70, 0.72, 0.74], 10: [0.85, 0.87, 0.89], 20: [0.90, 0.91, 0.92],
                           50: [0.95, 0.95, 0.96]},
        "ratio": {0.25: [0.95, 0.95, 0.96], 0.5: [0.96, 0.96, 0.96], 2.0: [0.94, 0.95, 0.95]}},
}


def _study(tmp_path, repo_root, acc, confusion=True):
    """A study of one model (cnn), three seeds, the variants in `acc` (variant -> accuracy per
    seed): metrics.json, confusion.json and history.json of every cell."""
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["study"] = {"variants": list(acc), "models": ["cnn"], "seeds": [0, 1, 2]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for variant, values in acc.items():
        for seed, a in enumerate(values):
            ev = tmp_path / f"metrics/evaluate/{variant}/cnn/seed{seed}"
            tr = tmp_path / f"metrics/train/{variant}/cnn/seed{seed}"
            ev.mkdir(parents=True)
            tr.mkdir(parents=True)
            (ev / "metrics.json").write_text(json.dumps(
                {"accuracy": a, "macro_f1": a - 0.01, "num_test": 100, "variant": variant,
                 "model": "cnn", "seed": seed}))
            if confusion:
                right = round(10 * a)
                (ev / "confusion.json").write_text(json.dumps(
                    {"class_names": [str(c) for c in range(10)],
                     "matrix": [[right if i == j else (10 - right if j == (i + 1) % 10 else 0)
                                 for j in range(10)] for i in range(10)]}))
            (tr / "history.json").write_text(json.dumps(
                [{"epoch": e, "val_accuracy": a * e / 3} for e in (1, 2, 3)]))


def _packed(folder, n_per_class, seed, classes=10, size=12, meta=None):
    from synthaug.pipeline.data.storage import write_dataset

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    images = rng.integers(0, 256, (len(labels), size, size, 1), dtype=np.uint8)
    folder.mkdir(parents=True)
    write_dataset(folder, images, labels, [str(c) for c in range(classes)], meta=meta)


def _prepared(tmp_path):
    for i, (split, n) in enumerate((("train", 8), ("val", 3), ("test", 5))):
        _packed(tmp_path / "data/prepared" / split, n, i, meta={
            "source": "digits", "split": split,
            "prepare": {"source": "digits", "train_per_class": 50, "seed": 0}})


def _assert_png(path, min_size=5000):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > min_size, path


def _cell(table_line: str, column: int) -> str:
    return [c.strip() for c in table_line.strip("|").split("|")][column]


def test_report_renders_from_a_tiny_matrix(tmp_path, run_cli, repo_root):
    acc = {"real": [0.90, 0.91, 0.89], "real+classic": [0.94, 0.95, 0.94],
           "real+diffusion": [0.92, 0.93, 0.93]}
    _study(tmp_path, repo_root, acc)
    _prepared(tmp_path)
    for i, name in enumerate(SETS):
        _packed(tmp_path / "data/synthetic" / name, 6, 10 + i, meta={"kind": "synthetic"})
    _packed(tmp_path / "data/augmented", 32, 20, meta={"augment": {"copies_per_image": 4}})
    for model, sweeps in SWEEP.items():
        rows = [{"sweep": sweep, "value": value, "seed": seed,
                 "variant": "real" if sweep == "real_per_class" else "real+diffusion",
                 "accuracy": a, "macro_f1": a - 0.02, "train_images": 10 * value}
                for sweep, points in sweeps.items() for value, accs in points.items()
                for seed, a in enumerate(accs)]
        f = tmp_path / "metrics/sweep" / model / "results.json"
        f.parent.mkdir(parents=True)
        f.write_text(json.dumps({"model": model, "rows": rows}))
    quality = tmp_path / "reports/quality"  # another stage's output in reports/
    (quality / "figures").mkdir(parents=True)
    record = {"real-val": {"images": 350, "fid_domain": 0.12, "near_copy_fraction": 0.0,
                           "failing_classes": []},
              "gan-prior": {"images": 1000, "fid_domain": 3.4, "cas": 0.81, "cas_ratio": 0.85,
                            "near_copy_fraction": 0.02, "failing_classes": ["3"]},
              "noise": {"images": 350, "fid_domain": 250.0, "near_copy_fraction": 0.0,
                        "failing_classes": ["0", "1"]}}
    (quality / "quality.json").write_text(json.dumps(record))
    # the report reads quality.json, never the page: nothing of this may reach report.md
    quality_md = "# Synthetic data quality\n\n| scraped | table |\n\n### gan-prior\n"
    (quality / "quality.md").write_text(quality_md)
    (quality / "figures/fid_vs_cas.png").write_bytes(b"\x89PNG fake")

    r = run_cli(tmp_path, "report")
    assert r.exit_code == 0, r.output
    out = tmp_path / "reports"
    assert (quality / "quality.md").read_text() == quality_md  # only the report's own files
    text = (out / "report.md").read_text()
    assert "| real+classic | cnn | 3 | 94.3" in text and "**significant**" in text
    assert "| real | cnn | 3 | 90.0" in text and "baseline" in text
    for fig in ("accuracy.png", "learning_curves.png", "best_confusion.png", "samples.png",
                "sweep_real_per_class.png", "sweep_ratio.png"):
        _assert_png(out / "figures" / fig)
        assert f"](figures/{fig})" in text
    for section in ("## Data", "### Training sets", "## Results", "## Sweeps",
                    "## Sample images", "## Synthetic data quality", "### Ranking check"):
        assert f"\n{section}\n" in text, section
    # data summary from the prepared splits
    assert "Source: `digits`" in text and "12 x 12, 1 channel" in text
    assert "train 80, val 30, test 50" in text and "Real training images: 8 per class" in text
    assert "Not sampled yet" not in text and "No classic augmentation" not in text
    # the quality table from quality.json, the ranking check and links relative to reports/
    lines = text.splitlines()
    gan = next(line for line in lines if line.startswith("| gan-prior "))
    assert [_cell(gan, i) for i in range(7)] == ["gan-prior", "1000", "3.40", "81.0%", "0.85",
                                                 "2.0%", "3"]
    assert _cell(next(line for line in lines if line.startswith("| *noise* ")), 3) == "-"
    assert "Best CAS: **gan-prior**, 81.0% = 85% of the real-trained" in text
    check = lines.index("| metric | best | worst | holds |")
    # CAS: no reference has it, so no check
    assert lines[check + 2:lines.index("", check)] == ["| FID-domain | real-val | noise | yes |"]
    assert "(quality/quality.md)" in text and "(quality/figures/fid_vs_cas.png)" in text
    assert "scraped" not in text and "### gan-prior" not in text  # per-set sections stay there
    # the sweep tables: mean (95% CI) per model, the best in bold; the study fills in
    # k = prepare.train_per_class (50) and ratios 0 (real) and 1 (real+diffusion)
    row10 = next(line for line in lines if line.startswith("| 10 |"))
    cnn10, eff10 = [0.80, 0.83, 0.83], [0.85, 0.87, 0.89]
    half = T2 * np.std(cnn10, ddof=1) / math.sqrt(3)
    assert _cell(row10, 1) == f"82.0 ({100 * (0.82 - half):.1f}-{100 * (0.82 + half):.1f})"
    assert _cell(row10, 1) == "82.0 (77.7-86.3)"
    half = T2 * np.std(eff10, ddof=1) / math.sqrt(3)  # sd 0.02: 4.97 pp
    assert _cell(row10, 2) == f"**87.0** ({100 * (0.87 - half):.1f}-{100 * (0.87 + half):.1f})"
    assert _cell(row10, 2) == "**87.0** (82.0-92.0)"
    row50 = next(line for line in lines if line.startswith("| 50 (*study*) |"))
    assert _cell(row50, 1).startswith("90.0 (") and _cell(row50, 2).startswith("**95.3** (")
    ratio0 = next(line for line in lines if line.startswith("| 0 (*study*: real) |"))
    assert _cell(ratio0, 1).startswith("90.0 (") and _cell(ratio0, 2) == "-"  # no rival: no bold
    ratio1 = next(line for line in lines if line.startswith("| 1 (*study*: real+diffusion) |"))
    assert _cell(ratio1, 1).startswith("92.7 (") and _cell(ratio1, 2) == "-"
    winner = next(line for line in text.splitlines() if line.startswith("At 10 real images"))
    assert winner.startswith("At 10 real images per class: efficientnet_lite0 87.0% vs cnn "
                             "82.0% (+5.0 pp over 3 seeds; paired p "), winner
    results = json.loads((out / "results.json").read_text())
    assert results["real+classic/cnn"]["gain_vs_real"] == pytest.approx(0.0433, abs=1e-3)
    assert results["real+classic/cnn"]["p_vs_real"] < 0.05
    assert results["sweep/real_per_class/10/efficientnet_lite0"]["accuracy_mean"] == pytest.approx(0.87)
    assert results["sweep/real_per_class/50/cnn"]["accuracy_mean"] == pytest.approx(0.90)
    assert results["sweep/ratio/0/cnn"]["seeds"] == 3
    assert results["sweep/ratio/0.25/cnn"]["macro_f1_mean"] == pytest.approx(0.89)


def test_report_says_what_is_missing(tmp_path, run_cli, repo_root):
    _study(tmp_path, repo_root, {"real": [0.90, 0.91, 0.89], "real+classic": [0.94, 0.95, 0.94]},
           confusion=False)
    _prepared(tmp_path)
    r = run_cli(tmp_path, "report")
    assert r.exit_code == 0, r.output
    out = tmp_path / "reports"
    text = (out / "report.md").read_text()
    assert "No sweep results for cnn, efficientnet_lite0 yet" in text
    assert "metrics/sweep/efficientnet_lite0/results.json" in text
    from synthaug.stages.params import load_params

    sets = load_params(repo_root / "params.yaml").sample.sets
    assert "Not sampled yet" in text and sets and all(name in text for name in sets)
    assert "No classic augmentation copies" in text
    assert "The quality stage has not run" in text
    assert "(No confusion matrix:" in text and "confusion.json` is missing" in text
    # the study's cells alone: one point per model, a table but no figure
    assert "| 50 (*study*) | 90.0 (" in text  # no column for models without results
    assert "(No figure: every model has a single point so far.)" in text
    figures = {f.name for f in (out / "figures").iterdir()}
    from synthaug.pipeline.report.results import REGISTERED

    # every figure dvc.yaml registers exists; the ones without data say so (not embedded)
    assert figures == {".synthaug-output", *REGISTERED}
    assert "best_confusion.png" not in text and "when_cnn.png" not in text
    _assert_png(out / "figures/samples.png", 1000)  # the real train split alone
    assert "sweep/real_per_class/50/cnn" in json.loads((out / "results.json").read_text())


def test_report_without_results_says_what_to_run(tmp_path, run_cli, repo_root):
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text())
    r = run_cli(tmp_path, "report")
    assert r.exit_code == 2 and "run `dvc repro` first" in r.output
