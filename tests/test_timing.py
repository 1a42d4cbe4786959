"""Every stage records what it cost: paths.timings/<stage>[/<cell>].json (wall and CPU seconds,
peak memory, the machine), written atomically when the command succeeds, and listed in
dvc.yaml as an output of the stage (not a dvc metric)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from synthaug.pipeline.core.timing import ISA_FLAGS, Stopwatch, cpu_info


def test_prepare_writes_its_timing_file(run_cli, tmp_path):
    (tmp_path / "params.yaml").write_text("prepare:\n  source: digits\n  size: 8\n")
    r = run_cli(tmp_path, "prepare")
    assert r.exit_code == 0, r.output
    t = json.loads((tmp_path / "metrics/timings/prepare.json").read_text())
    assert (t["stage"], t["cell"]) == ("prepare", None)
    assert 0 < t["wall_seconds"] < 600 and 0 <= t["cpu_seconds"] < 600 * os.cpu_count()
    assert t["cores_busy"] == pytest.approx(t["cpu_seconds"] / t["wall_seconds"], abs=0.01)
    assert 10 < t["peak_rss_mib"] < 64 * 1024 and t["children_peak_rss_mib"] >= 0
    m = t["machine"]
    assert m["cpu"] and 1 <= m["usable_cores"] <= m["cores"] and m["python"]
    if Path("/proc/cpuinfo").is_file() and "flags" in Path("/proc/cpuinfo").read_text():
        assert set(m["isa"]) == set(ISA_FLAGS)
    assert m["gpu"] is None  # prepare never starts CUDA
    # a failed run writes none (and leaves the last good one)
    before = (tmp_path / "metrics/timings/prepare.json").read_bytes()
    r = run_cli(tmp_path, "prepare", "-S", "prepare.test_fraction=1.5")
    assert r.exit_code == 2
    assert (tmp_path / "metrics/timings/prepare.json").read_bytes() == before
    assert [p.name for p in (tmp_path / "metrics/timings").iterdir()] == ["prepare.json"]


def test_a_cell_writes_its_own_file_and_other_ranks_none(tmp_path, monkeypatch):
    from synthaug.stages.cli import timed

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("paths:\n  timings: t\n")
    calls = []

    def command(params: Path, set_=None, seed=None):
        calls.append(seed)
        return Path("real+gan", "cnn", f"seed{seed}") if seed is not None else None

    wrapped = timed("train", command)
    assert wrapped(params=Path("p.yaml"), set_=None, seed=3) == Path("real+gan/cnn/seed3")
    t = json.loads((tmp_path / "t/train/real+gan/cnn/seed3.json").read_text())
    assert t["cell"] == "real+gan/cnn/seed3" and t["wall_seconds"] >= 0
    wrapped(params=Path("p.yaml"), set_=["paths.timings=u"])
    assert (tmp_path / "u/train.json").is_file()
    monkeypatch.setenv("RANK", "1")  # under torchrun only rank 0 writes
    wrapped(params=Path("p.yaml"), set_=["paths.timings=v"], seed=1)
    assert calls == [3, None, 1] and not (tmp_path / "v").exists()
    assert not list(tmp_path.rglob(".*tmp-*"))  # written atomically: no leftovers


def test_cpu_info_reads_the_isa_flags():
    text = ("processor\t: 0\nmodel name\t: Some CPU @ 2GHz\nflags\t\t: fpu sse2 avx2 avx512f "
            "avx512_bf16 amx_tile\n\nprocessor\t: 1\nmodel name\t: Some CPU @ 2GHz\nflags\t: fpu\n")
    info = cpu_info(text)
    assert info["cpu"] == "Some CPU @ 2GHz" and info["cores"] >= 1
    assert info["isa"] == {"avx2": True, "avx512f": True, "avx512_bf16": True, "amx_tile": True,
                           "amx_bf16": False}
    assert cpu_info("")["isa"] == {}  # unknown, not "absent"


def test_stopwatch_counts_cpu_time_of_children():
    import subprocess
    import sys

    watch = Stopwatch()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    t = watch.record(stage="x")
    assert t["stage"] == "x" and t["cpu_seconds"] > 0.05 and t["children_peak_rss_mib"] > 1


def test_a_record_has_the_process_start_up_and_its_clock_times():
    import subprocess
    import sys
    import time

    # a fresh interpreter importing numpy: its start-up is counted before the stopwatch
    out = subprocess.run([sys.executable, "-c", "import numpy, json; from pipeline.core.timing "
                          "import Stopwatch; print(json.dumps(Stopwatch().record()))"],
                         check=True, capture_output=True, text=True).stdout
    t = json.loads(out)
    assert 0.01 < t["startup_seconds"] < 60
    assert t["started_at"] <= t["ended_at"] <= time.time()
    assert t["ended_at"] - t["started_at"] >= t["startup_seconds"] - 0.002  # rounded to ms


def test_process_age_reads_proc_and_gives_none_without_it():
    from synthaug.pipeline.core.timing import process_age

    tck = os.sysconf("SC_CLK_TCK")
    stat = f"123 (a (b) c) S {' '.join(['0'] * 18)} {10 * tck} 0 0"  # starttime: 10 s after boot
    assert process_age(stat, uptime=12.5) == pytest.approx(2.5)
    assert process_age("garbage", uptime=1.0) is None


def test_the_isa_cap_is_recorded(monkeypatch):
    from synthaug.pipeline.core.timing import isa_cap

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert isa_cap() is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert isa_cap() == "ONEDNN_MAX_CPU_ISA=AVX2"


def test_every_dvc_stage_reports_its_timing_file(repo_root):
    stages = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    for name, body in stages.items():  # no matrix stage: one file per stage; an output, not
        # a dvc metric (tests/test_dvc_views.py: the report's summary is the only one)
        outs = [next(iter(m)) if isinstance(m, dict) else m for m in body.get("outs", [])]
        want = f"${{paths.timings}}/{name}.json"
        assert want in outs, (name, outs)
        entry = next(m for m in body["outs"] if isinstance(m, dict) and want in m)
        assert entry[want] == {"cache": False}


def test_a_stage_s_whole_record_leaves_its_cells_out_of_the_table(tmp_path):
    """The train stage writes train.json; a variant trained by hand (train/VARIANT.json) or an
    earlier layout's cells must not add to the stage's time in the report."""
    from synthaug.pipeline.report.timings import read, table

    def write(rel: str, stage: str, cell: str | None, wall: float) -> None:
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"stage": stage, "cell": cell, "wall_seconds": wall,
                                 "cpu_seconds": 2 * wall}))

    write("train.json", "train", None, 200.0)
    write("train/real.json", "train", "real", 30.0)
    write("train_generator/gan.json", "train_generator", "gan", 90.0)
    write("train_generator/vae.json", "train_generator", "vae", 25.0)
    records = read(tmp_path)
    assert sorted((r["stage"], r["cell"]) for r in records) == [
        ("train", None), ("train_generator", "gan"), ("train_generator", "vae")]
    text = table(records)
    assert "| train | 1 | 200 |" in text and "| train_generator | 2 | 115 |" in text
    assert "**315**" in text
