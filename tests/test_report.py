"""Statistics on known inputs, and the report rendered from a tiny hand-made study."""
import json
import math

import numpy as np
import pytest
import yaml

from pipeline.stats import mean_ci, paired_test


def test_mean_ci_matches_the_t_formula():
    s = mean_ci([0.90, 0.92, 0.94])
    # mean 0.92, sd 0.02, t(0.975, 2) = 4.302652729911275
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert s.mean == pytest.approx(0.92) and s.std == pytest.approx(0.02)
    assert (s.low, s.high) == (pytest.approx(0.92 - half), pytest.approx(0.92 + half))
    one = mean_ci([0.5])
    assert (one.n, one.low, one.high) == (1, 0.5, 0.5)


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


def test_report_renders_from_a_tiny_matrix(tmp_path, run_cli, repo_root):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["study"] = {"variants": ["real", "real+classic"], "models": ["cnn"], "seeds": [0, 1, 2]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    acc = {"real": [0.90, 0.91, 0.89], "real+classic": [0.94, 0.95, 0.94]}
    for variant, values in acc.items():
        for seed, a in enumerate(values):
            ev = tmp_path / f"metrics/evaluate/{variant}/cnn/seed{seed}"
            tr = tmp_path / f"metrics/train/{variant}/cnn/seed{seed}"
            ev.mkdir(parents=True)
            tr.mkdir(parents=True)
            (ev / "metrics.json").write_text(json.dumps(
                {"accuracy": a, "macro_f1": a - 0.01, "num_test": 100, "variant": variant,
                 "model": "cnn", "seed": seed}))
            (ev / "confusion.png").write_bytes(b"\x89PNG fake")
            (tr / "history.json").write_text(json.dumps(
                [{"epoch": e, "val_accuracy": a * e / 3} for e in (1, 2, 3)]))
    neighbour = tmp_path / "reports/quality/quality.md"  # another stage's output in reports/
    neighbour.parent.mkdir(parents=True)
    neighbour.write_text("quality")
    r = run_cli(tmp_path, "report")
    assert r.exit_code == 0, r.output
    out = tmp_path / "reports"
    assert neighbour.read_text() == "quality"  # the report replaced only its own files
    text = (out / "report.md").read_text()
    assert "| real+classic | cnn | 3 | 94.3" in text and "**significant**" in text
    assert "| real | cnn | 3 | 90.0" in text and "baseline" in text
    for fig in ("accuracy.png", "learning_curves.png"):
        assert (out / "figures" / fig).stat().st_size > 5000
    assert (out / "figures/best_confusion.png").read_bytes() == b"\x89PNG fake"  # seed 1 of classic
    results = json.loads((out / "results.json").read_text())
    assert results["real+classic/cnn"]["gain_vs_real"] == pytest.approx(0.0433, abs=1e-3)
    assert results["real+classic/cnn"]["p_vs_real"] < 0.05


def test_report_without_results_says_what_to_run(tmp_path, run_cli, repo_root):
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text())
    r = run_cli(tmp_path, "report")
    assert r.exit_code == 2 and "run `dvc repro` first" in r.output
