"""The report's and the quality page's building blocks (pipeline/report/) over small hand-made
data: what each table, line and section says, and what quality.json holds."""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from synthaug.pipeline.experiments.config import StudyConfig
from synthaug.pipeline.report import inputs, quality_page, results, study_page, sweeps
from synthaug.pipeline.report.study import Layout, Study


def _sets() -> dict:
    """A quality record: gan's KID is NaN (null), nobody has FID-lite0 or the PRDC metrics."""
    return {"real-val": {"images": 30, "fid_domain": 0.5, "cas": 0.9, "cas_ratio": 0.97,
                         "near_copy_fraction": 0.0, "failing_classes": []},
            "gan": {"images": 60, "fid_domain": 4.0, "kid_domain": None, "cas": 0.8,
                    "cas_ratio": 0.86, "near_copy_fraction": 0.125, "failing_classes": ["3", "7"]},
            "vae": {"images": 60, "fid_domain": 9.0, "cas": 0.85, "cas_ratio": 0.91,
                    "near_copy_fraction": 0.0, "failing_classes": []},
            "noise": {"images": 30, "fid_domain": 300.0, "cas": 0.1, "cas_ratio": 0.11,
                      "near_copy_fraction": 0.0, "failing_classes": ["0"]}}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def _study(**kw) -> Study:
    cells = {("real", "cnn", 0): {"accuracy": 0.90, "macro_f1": 0.89, "history": []},
             ("real", "cnn", 1): {"accuracy": 0.92, "macro_f1": 0.91, "history": []}}
    return Study(study=StudyConfig(variants=["real"], models=["cnn"], seeds=[0, 1]),
                 cells=kw.pop("cells", cells), **kw)


# -- the quality page --------------------------------------------------------------------------

def test_record_holds_what_the_pages_need_and_only_what_json_can():
    rows = [{"name": "gan", "images": 60, "fid_domain": 4.0, "kid_domain": float("nan"),
             "fid_lite0": None, "cas": 0.8, "near_copy_fraction": 0.1, "failing_classes": [3],
             "nearest_distance": np.zeros(3), "per_class": {"3": {}}, "kind": "synthetic"}]
    rec = quality_page.record(rows)
    # NaN: null (computed, undefined); None: left out; arrays and per-class detail dropped
    assert rec == {"gan": {"images": 60, "fid_domain": 4.0, "kid_domain": None, "cas": 0.8,
                           "near_copy_fraction": 0.1, "failing_classes": ["3"]}}
    assert list(rec["gan"])[0] == "images" and list(rec["gan"])[-1] == "failing_classes"
    assert json.loads(json.dumps(rec, allow_nan=False)) == rec


def test_quality_table_columns_and_cells():
    t = quality_page.table(_sets())
    # a column for each metric some set has (KID: gan's null), none for the others
    assert _cells(t.splitlines()[0]) == ["set", "images", "FID-domain ↓", "KID-domain ↓", "CAS % ↑",
                                         "CAS / real ↑", "near-copies", "failing classes"]
    assert _cells(_line(t, "| gan ")) == ["gan", "60", "4.00", "nan", "80.0%", "0.86", "12.5%", "3, 7"]
    assert _cells(_line(t, "| *real-val* "))[3] == "-"  # references in italics; no KID: "-"
    assert _cells(_line(t, "| *noise* "))[-1] == "0" and _cells(_line(t, "| vae "))[-1] == "-"


def test_summary_best_cas_is_synthetic_and_the_heading_level_is_the_callers():
    lines = quality_page.summary(_sets(), heading="###")
    # real-val has the highest CAS, but is a reference
    assert ("Best CAS: **vae**, 85.0% = 91% of the real-trained classifier's test accuracy."
            in lines)
    assert "### Ranking check" in lines and "## Ranking check" not in lines
    checks = lines[lines.index("| metric | best | worst | holds |") + 2:]
    # KID: only gan's null, no ranking; CAS: real-val first, noise last
    assert checks == ["| FID-domain | real-val | noise | yes |", "| CAS % | real-val | noise | yes |",
                      "| CAS / real | real-val | noise | yes |"]
    bare = quality_page.summary({"gan": {"images": 1, "fid_domain": 1.0, "near_copy_fraction": 0.0}})
    assert not any(line.startswith("Best CAS") for line in bare)
    assert bare[-2:] == ["| metric | best | worst | holds |", "|---|---|---|---|"]  # no references


def test_ranking_check_fails_noise_not_last_and_names_prototypical_sets():
    sets = _sets()
    sets["gan"]["fid_domain"] = 500.0  # worse than noise
    sets["gan"]["precision"], sets["real-val"]["precision"], sets["noise"]["precision"] = 0.9, 0.7, 0.0
    assert quality_page.ranking_check(sets) == {
        "fid_domain": "no", "precision": "yes; above real-val: gan (prototypical images)",
        "cas": "yes", "cas_ratio": "yes"}
    assert "| FID-domain | real-val | gan | **no** |" in quality_page.summary(sets)


def test_quality_page_has_a_section_per_synthetic_set():
    text = quality_page.page(_sets(), "lenet5", 7, 0.25, Path("data/synthetic"),
                             Path("reports/quality"))
    assert [line for line in text.splitlines() if line.startswith("### ")] == ["### gan", "### vae"]
    assert "![gan samples](../../data/synthetic/gan/grid.png)" in text
    elsewhere = quality_page.page(_sets(), "cnn", 5, 0.5, Path("/d/synthetic"), Path("q"))
    assert "![gan samples](/d/synthetic/gan/grid.png)" in elsewhere  # absolute: as it is
    assert "](../data/synthetic/vae/grid.png)" in quality_page.page(
        _sets(), "cnn", 5, 0.5, Path("data/synthetic"), Path("q"))  # one level down
    assert "![closest pairs](figures/closest_vae.png)" in text
    assert "(`lenet5` trained" in text and "k = 7." in text and "than 0.25 x that" in text
    assert text.index("## Ranking check") < text.index("fid_vs_cas.png") < text.index("## Sets")


# -- the study report --------------------------------------------------------------------------

def test_layout_links_are_relative_to_the_report():
    layout = Layout.of(SimpleNamespace(**{k: f"/x/{k}" for k in Layout.__dataclass_fields__}))
    assert layout.quality == Path("/x/quality")
    assert layout.rel(Path("/abs/q.md")) == Path("/abs/q.md")
    assert Layout(report=Path("out")).rel(Path("data/prepared/preview.png")) == \
        Path("../data/prepared/preview.png")


def test_quality_section_reads_the_record():
    s = _study(layout=Layout(report=Path("out"), quality=Path("out/q")))
    text = "\n".join(study_page.quality_section(s))
    assert "The quality stage has not run (no `out/q/quality.json`)" in text
    s.quality = _sets()
    text = "\n".join(study_page.quality_section(s))
    assert "### Ranking check" in text and "Best CAS: **vae**" in text
    assert "Full quality report: [quality.md](q/quality.md)" in text
    assert "fid_vs_cas" not in text  # no scatter figure on disk: no link


def test_summarise_pairs_only_with_the_baseline_on_the_same_seeds():
    acc = {("real", "cnn"): [0.90, 0.91, 0.92], ("real+gan", "cnn"): [0.93, 0.94, 0.96],
           ("real+vae", "cnn"): [0.85, 0.87], ("real+gan", "eff"): [0.97]}
    cells = {(v, m, sd): {"accuracy": a, "macro_f1": a - 0.01, "history": []}
             for (v, m), values in acc.items() for sd, a in enumerate(values)}
    s = Study(study=StudyConfig(variants=["real", "real+gan", "real+vae"], models=["cnn", "eff"],
                                seeds=[0, 1, 2]), cells=cells)
    rows = results.summarise(s)
    assert [(r["variant"], r["model"], r["seeds"]) for r in rows] == [
        ("real", "cnn", [0, 1, 2]), ("real+gan", "cnn", [0, 1, 2]), ("real+gan", "eff", [0]),
        ("real+vae", "cnn", [0, 1])]
    assert rows[1]["vs_real"]["mean_diff"] == pytest.approx(0.1 / 3) and rows[1]["vs_real"]["n"] == 3
    assert rows[3]["vs_real"]["mean_diff"] == pytest.approx(-0.045)
    assert "vs_real" not in rows[0] and "vs_real" not in rows[2]  # no real eff cells
    table = results.table(rows).splitlines()
    assert table[2].endswith("| 90.0 | baseline | - | - | - |") and table[4].endswith("| - | - | - | - |")
    # MDE column: real+gan cnn's differences (.03, .03, .04) have SD .0058: MDE 1.8 points
    assert "| 1.8 |" in table[3] and rows[1]["vs_real"]["decided"]  # significant: decided
    assert all("worth" not in r for r in rows)  # no real_per_class curve: no exchange rate
    out = results.results_json(rows, sweeps.merge({}, {}, "real+gan", None, None, []))
    assert list(out) == ["real/cnn", "real+gan/cnn", "real+gan/eff", "real+vae/cnn"]
    assert out["real+vae/cnn"]["gain_vs_real"] == pytest.approx(-0.045)
    assert "gain_vs_real" not in out["real+gan/eff"] and out["real+gan/eff"]["seeds"] == 1


def test_plot_data_sorted_by_cell():
    data = results.plot_data({
        ("b", "cnn", 0): {"accuracy": 0.5, "history": [{"epoch": 1, "val_accuracy": 0.4}]},
        ("a", "cnn", 1): {"accuracy": 0.6, "history": []}})
    assert [a["cell"] for a in json.loads(data["accuracy.json"])] == ["a / cnn / seed 1",
                                                                       "b / cnn / seed 0"]
    assert json.loads(data["learning_curves.json"]) == [
        {"cell": "b / cnn / seed 0", "epoch": 1, "val_accuracy": 0.4}]


def test_page_without_inputs_says_what_is_missing():
    s = _study(missing=["real/cnn/seed2"], unsampled=["gan-prior"],
               training_sets={"real": {"num_images": 80, "made_of": {"real": [8] * 10}},
                              "real+gan": {"num_images": 160, "online_augment": "light",
                                           "made_of": {"real": [8] * 10, "gan": [8] * 10}}})
    text = study_page.markdown(s, results.summarise(s), drawn=set())
    assert "Source `?`, all real training images per class" in text and "2 cells (1 variant" in text
    assert "The prepared splits are missing (`data/prepared`)" in text
    assert "| real | 80 | real: 80 | - |" in text and "| real+gan | 160 | real: 80, gan: 80 | light |" in text
    assert "Best cell: real / cnn / seed 1 (92.0% test accuracy)." in text
    assert "(No confusion matrix: `metrics/evaluate/real/cnn/seed1/confusion.json` is missing.)" in text
    assert "No data set to show yet." in text and "`data/synthetic`): gan-prior." in text
    assert "## Sweeps" not in text  # no sweeps merged
    assert text.endswith("## Missing cells\n\nNot evaluated yet: real/cnn/seed2\n")


# -- the sweeps --------------------------------------------------------------------------------

def test_merge_sweep_results_with_the_studys_cells():
    cells = {("real", "cnn", 0): {"accuracy": 0.90, "macro_f1": 0.88},
             ("real", "cnn", 1): {"accuracy": 0.92, "macro_f1": 0.90},
             ("real+gan", "cnn", 0): {"accuracy": 0.93, "macro_f1": 0.91},
             ("real", "vit", 0): {"accuracy": 0.70}}
    rows = [{"sweep": "real_per_class", "value": 10, "seed": 0, "accuracy": 0.8, "macro_f1": 0.78},
            {"sweep": "real_per_class", "value": 50, "seed": 0, "accuracy": 0.5},
            {"sweep": "ratio", "value": 2, "seed": 0, "accuracy": 0.85},
            {"sweep": "unknown", "value": 1, "seed": 0, "accuracy": 0.1}]
    m = sweeps.merge({"eff": None, "cnn": {"model": "cnn", "rows": rows}}, cells, "real+gan", 50,
                     1.0, ["eff", "cnn", "vit"])
    assert set(m) == {"real_per_class", "ratio"} and m["ratio"]["absent"] == ["eff"]
    rpc = m["real_per_class"]
    assert rpc["absent"] == ["eff"] and list(rpc["points"]) == ["cnn", "vit"]
    # the sweep's own seed 0 at k = 50 wins over the study's; the study adds seed 1
    assert rpc["points"]["cnn"] == {10.0: {0: (0.8, 0.78)}, 50.0: {0: (0.5, None), 1: (0.92, 0.90)}}
    assert list(rpc["points"]["cnn"]) == [10.0, 50.0] and rpc["study"] == {50.0}
    assert m["ratio"]["points"]["cnn"] == {0.0: {0: (0.90, 0.88), 1: (0.92, 0.90)},
                                           1.0: {0: (0.93, 0.91)}, 2.0: {0: (0.85, None)}}
    assert m["ratio"]["study"] == {0.0, 1.0}
    assert sweeps.merge({}, cells, "real+gan", None, None, [])["real_per_class"]["points"] == {}
    assert "macro_f1_mean" not in sweeps.results(m)["sweep/real_per_class/50/cnn"]  # a None F1


def test_the_sweeps_section_names_skipped_points():
    s = _study(skipped=[{"model": "cnn", "sweep": "real_per_class", "value": 100, "variant": "real",
                         "reason": "k=100 images per class, but class 'a' of the train pool has only 33"}])
    s.sweeps = {"real_per_class": {"points": [], "absent": []}}
    text = "\n".join(sweeps.section(s, set()))
    assert ("Skipped points (the train pool cannot give them): cnn: real_per_class 100 real "
            "(k=100 images per class, but class 'a' of the train pool has only 33).") in text


def test_sweep_table_and_winner_line():
    sweep = {"points": {"cnn": {5.0: {0: (0.60, None), 1: (0.64, None)}, 20.0: {0: (0.90, None)}},
                        "eff": {20.0: {0: (0.95, None)}}}}
    lines = sweeps.table(sweep, header="k").splitlines()
    assert lines[:2] == ["| k | cnn | eff |", "|---|---|---|"]
    assert lines[2].startswith("| 5 | 62.0 (") and lines[2].endswith(") | - |")  # alone: no bold
    assert lines[3] == "| 20 | 90.0 (1 seed) | **95.0** (1 seed) |"
    # no results at 10: the smallest k several models share
    assert sweeps.winner_line(sweep) == ("At 20 real images per class: eff 95.0% vs cnn 90.0% "
                                         "(+5.0 pp over 1 seed).")
    assert sweeps.winner_line(sweep, k=5) == ("At 5 real images per class only cnn has results: "
                                              "62.0% (2 seeds).")
    assert sweeps.winner_line({"points": {"cnn": {5.0: {0: (0.6, None)}}}}) is None
    # models that share seeds: the paired test, and whether the data decides it
    shared = {"points": {"cnn": {10.0: {0: (0.86, None), 1: (0.88, None), 2: (0.87, None)}},
                         "eff": {10.0: {0: (0.90, None), 1: (0.87, None), 2: (0.91, None)}}}}
    line = sweeps.winner_line(shared)
    assert line.startswith("At 10 real images per class: eff 89.3% vs cnn 87.0% (+2.3 pp over "
                           "3 seeds; paired p ") and "not decided by this data (MDE " in line
    clear = {"points": {"cnn": {10.0: {0: (0.86, None), 1: (0.88, None), 2: (0.87, None)}},
                        "eff": {10.0: {0: (0.91, None), 1: (0.925, None), 2: (0.918, None)}}}}
    assert "significant" in sweeps.winner_line(clear)


# -- the inputs --------------------------------------------------------------------------------

def test_inputs_read_what_is_there(tmp_path):
    layout = Layout(evaluate_metrics=tmp_path / "ev", train_metrics=tmp_path / "tr",
                    models=tmp_path / "models")  # nothing of the working directory
    (tmp_path / "ev/real/cnn/seed0").mkdir(parents=True)
    (tmp_path / "ev/real/cnn/seed0/metrics.json").write_text('{"accuracy": 0.9}')
    runs = {("real", "cnn", 0): Path("real/cnn/seed0"), ("real", "cnn", 1): Path("real/cnn/seed1")}
    assert inputs.cells(layout, runs) == ({("real", "cnn", 0): {"accuracy": 0.9, "history": []}},
                                          ["real/cnn/seed1"])
    assert inputs.quality(tmp_path) is None and inputs.sweep_results(tmp_path, ["cnn"]) == {"cnn": None}
    assert inputs.set_subtitle("vae", "gmm", {"components": 3, "sigma": 0.5}) == \
        "vae / gmm (components=3, sigma=0.5)"
    assert inputs.set_subtitle("gan", "prior", {}) == "gan / prior"


def test_each_row_gets_its_exchange_rate_off_the_real_only_curve():
    real = {5: [0.70, 0.72, 0.71], 10: [0.80, 0.82, 0.81], 20: [0.88, 0.90, 0.89]}
    acc = {("real", "cnn"): [0.93, 0.95, 0.94], ("real+vae", "cnn"): [0.845, 0.855, 0.85],
           ("real+gan", "cnn"): [0.60, 0.62, 0.61]}
    cells = {(v, m, sd): {"accuracy": a, "macro_f1": a, "history": []}
             for (v, m), values in acc.items() for sd, a in enumerate(values)}
    rows = [{"sweep": "real_per_class", "value": k, "seed": sd, "accuracy": a, "model": "cnn"}
            for k, values in real.items() for sd, a in enumerate(values)]
    s = Study(study=StudyConfig(variants=["real", "real+vae", "real+gan"], models=["cnn"],
                                seeds=[0, 1, 2]), cells=cells, train_per_class=50,
              sweeps=sweeps.merge({"cnn": {"model": "cnn", "rows": rows}}, cells, "real+vae", 50,
                                  None, ["cnn"]))
    out = {r["variant"]: r for r in results.summarise(s)}
    assert out["real"]["worth"]["k"] == pytest.approx(50)  # the study's own point
    assert out["real+vae"]["worth"]["k"] == pytest.approx((10 * 20) ** 0.5)
    assert out["real+vae"]["worth"]["text"].startswith("worth 14 real images per class")
    assert out["real+gan"]["worth"]["where"] == "below"
    table = results.table(list(out.values()))
    assert "| 14 (" in table and "; -36) |" in table and "| <5 |" in table
    js = results.results_json(list(out.values()), s.sweeps)
    assert js["real+vae/cnn"]["worth_real_per_class"]["where"] == "within"


def test_where_the_time_went_sums_each_stage_and_names_the_machine(tmp_path):
    import json

    from synthaug.pipeline.report import timings

    m = {"cpu": "AMD EPYC", "cores": 2, "usable_cores": 2, "gpu": None,
         "isa": {"avx2": True, "avx512f": False, "avx512_bf16": False}}
    for rel, wall, cpu in [("train/real/cnn.json", 10.0, 18.0), ("train/real/eff.json", 30.0, 58.0),
                           ("prepare.json", 5.0, 4.0), ("report.json", 99.0, 1.0)]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps({"stage": rel.split("/")[0].removesuffix(".json"),
                                                "wall_seconds": wall, "cpu_seconds": cpu,
                                                "peak_rss_mib": wall * 10, "machine": m}))
    worker = json.loads((tmp_path / "train/real/eff.json").read_text())  # its workers: 700 MiB
    (tmp_path / "train/real/eff.json").write_text(json.dumps({**worker, "children_peak_rss_mib": 700.0}))
    (tmp_path / "junk.json").write_text("{not json")
    records = timings.read(tmp_path)
    assert len(records) == 4
    text = "\n".join(timings.section(records, tmp_path))
    assert "AMD EPYC, 2 cores; ISA: AVX2 (no AVX-512, no bf16, no AMX); no GPU" in text
    rows = text.splitlines()
    first = rows.index("| stage | cells | wall s | CPU s | cores busy | start-up s | peak memory MiB |")
    assert rows[first + 2] == "| train | 2 | 40 | 76 | 1.9 | 0 | 700 |"  # the slowest first
    assert rows[first + 3] == "| prepare | 1 | 5 | 4 | 0.8 | 0 | 50 |"
    assert rows[first + 4].startswith("| **total** | 3 | **45** (0.8 min) | 80 |")  # no report
    assert "unbroken run" not in text  # records without clock times: no span
    assert timings.section([], tmp_path) == []


def test_the_span_of_one_run_counts_start_up_and_the_time_between_commands():
    from synthaug.pipeline.report import timings

    def rec(stage, start, startup, wall):
        return {"stage": stage, "wall_seconds": wall, "startup_seconds": startup,
                "started_at": start, "ended_at": start + startup + wall}

    old = rec("prepare", 1000.0, 2.0, 5.0)  # an earlier run, an hour before
    run = [rec("augment", 5000.0, 3.0, 10.0), rec("train", 5015.0, 4.0, 20.0),
           rec("sweep", 5040.0, 4.0, 30.0), rec("report", 5080.0, 3.0, 9.0)]
    s = timings.span([old, *run])
    assert s["commands"] == 3  # the report (still running when it reads these) is left out
    assert s["seconds"] == pytest.approx(74.0)  # 5000 -> 5074
    assert s["between"] == pytest.approx(74.0 - (13 + 24 + 34))
    text = "\n".join(timings.section([old, *run], Path("t")))
    assert "unbroken run of 3 commands took **74 s (1.2 min)**" in text
    assert "| train | 1 | 20 |" in text and "| 4 |" in text  # start-up column
    assert timings.span([{"stage": "x", "wall_seconds": 1.0}]) is None


def test_the_machine_line_names_an_isa_cap():
    from synthaug.pipeline.report import timings

    m = {"cpu": "AMD EPYC", "usable_cores": 2, "isa": {"avx2": True, "avx512f": True,
                                                        "avx512_bf16": True},
         "isa_cap": "ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2"}
    assert timings.machine(m) == ("AMD EPYC, 2 cores; ISA: AVX512-BF16, capped by "
                                  "ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2; no GPU")
