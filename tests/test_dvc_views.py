"""DVC's own views stay readable: `dvc metrics show` / `dvc exp show` read the report's summary
alone (one small file per variant and model and per synthetic set: a row each), never the
timings or per-cell records; `dvc plots show` renders the report's PNG figures only, as
<img> tags, so its HTML loads nothing from the network (a data plot makes DVC add vega from
a CDN). tests/test_e2e.py runs the commands themselves."""
from __future__ import annotations

import yaml


def _spec(repo_root):
    return yaml.safe_load((repo_root / "dvc.yaml").read_text())


def _names(entries) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def test_the_summary_is_the_only_metric(repo_root):
    spec = _spec(repo_root)
    summary = next(v["summary"] for v in spec["vars"] if "summary" in v)
    assert summary == "metrics/summary"
    metrics = {stage: body["metrics"] for stage, body in spec["stages"].items() if body.get("metrics")}
    assert set(metrics) == {"report"} and not spec.get("metrics"), metrics
    assert metrics["report"] == [{"${summary}/study": {"cache": False}},
                                 {"${summary}/quality": {"cache": False}}]
    assert spec["stages"]["report"]["cmd"] == "synthaug report --summary ${summary}"
    # what used to be a metric is still an output, outside the cache
    for stage, body in spec["stages"].items():
        for entry in body.get("outs", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            if path.endswith(".json"):
                assert entry == {path: {"cache": False}}, (stage, entry)


def test_only_image_plots(repo_root):
    spec = _spec(repo_root)
    assert not [s for s, body in spec["stages"].items() if body.get("plots")]
    plots = spec["plots"]
    assert plots and all(isinstance(p, str) and p.endswith(".png") for p in plots), plots
    assert "${paths.report}/figures/accuracy.png" in plots
    # every report figure named there exists after any report (a placeholder if need be): a
    # missing one would make `dvc plots show` load vega from the network
    from synthaug.pipeline.report.results import REGISTERED

    report = [p.rsplit("/", 1)[1] for p in plots if p.startswith("${paths.report}/figures/")]
    assert set(report) <= set(REGISTERED), sorted(set(report) - set(REGISTERED))
    assert len(set(plots)) == len(plots)


def test_the_summary_files(tmp_path):
    """study/<variant>/<model>.json and quality/<set>.json, short keys, no NaN (JSON null)."""
    from synthaug.pipeline.report.results import summary

    rows = [{"variant": "real", "model": "cnn", "mean": 0.9, "low": 0.88, "high": 0.92},
            {"variant": "real+gan", "model": "cnn", "mean": 0.91, "low": float("nan"),
             "high": float("nan"), "vs_real": {"mean_diff": 0.01, "p_value": float("nan")}}]
    quality = {"real-val": {"images": 350, "fid_domain": 0.1},
               "gan-prior": {"images": 1000, "fid_domain": 3.4, "precision": 0.7, "recall": 0.5,
                             "coverage": 0.6, "cas": 0.81, "cas_ratio": 0.85, "kid_domain": 0.01},
               "noise": {"images": 350, "fid_domain": 250.0}}
    assert summary(rows, quality) == {
        "study/real/cnn.json": {"acc": 0.9, "lo": 0.88, "hi": 0.92},
        "study/real+gan/cnn.json": {"acc": 0.91, "lo": None, "hi": None, "gain": 0.01, "p": None},
        "quality/gan-prior.json": {"fid": 3.4, "prec": 0.7, "rec": 0.5, "cov": 0.6, "cas": 0.81}}
    assert summary(rows[:1], None) == {"study/real/cnn.json": {"acc": 0.9, "lo": 0.88, "hi": 0.92}}
