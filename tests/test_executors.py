"""The train stage's cells on submitit's local executor (real subprocess jobs, as on a SLURM
node) and on a Ray started by the test: the same weights and metrics, bit for bit, as the
local pool; a killed cell fails the stage by name, and the rerun runs only that cell.
Those marked `cluster` need the extras (`pip install 'synthaug[slurm,ray]'`)."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from test_quality_stage import project as quality_project  # noqa: F401 (a fixture)
from test_train import blob_splits

RUNS = ("real/cnn/seed0", "real/cnn/seed1", "real/lenet5/seed0", "real/lenet5/seed1")
STUDY = ("train", "--study-variants", "--study-models", "--study-seeds", "--no-progress",
         "--no-figures")


@pytest.fixture
def study(tmp_path, run_cli):
    """A tiny study: 1 variant x 2 models x 2 seeds of the blobs, one epoch each."""
    params = blob_splits(tmp_path)
    params["train"].update(epochs=1, batch_size=16, epoch_size=0)
    params["study"].update(variants=["real"], models=["lenet5", "cnn"], seeds=[0, 1], workers=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_cli(tmp_path, "compose").exit_code == 0
    return tmp_path


def outputs(root: Path) -> dict[str, bytes]:
    """Every file the study's cells and summaries wrote, by path (dvclive's and the timing
    files' clocks left out: they are wall times)."""
    out = {}
    for top in ("models/classifiers", "metrics/evaluate", "metrics/study", "metrics/train"):
        for f in sorted((root / top).rglob("*")):
            if f.is_file() and f.suffix != ".lock":
                text = f.read_bytes()
                if f.suffix == ".json" and top == "metrics/train":
                    text = json.dumps(_timeless(json.loads(text)), sort_keys=True).encode()
                if f.name in ("seconds.tsv", "dvc.yaml"):  # a wall clock; dvclive's own
                    continue
                out[str(f.relative_to(root))] = text
    return out


def _timeless(x):
    if isinstance(x, dict):
        return {k: _timeless(v) for k, v in x.items() if "second" not in k and "time" not in k}
    if isinstance(x, list):
        return [_timeless(v) for v in x]
    return x


@pytest.mark.cluster
def test_cells_on_submitit_and_ray_equal_the_local_pool_bit_for_bit(study, run_cli):
    pytest.importorskip("submitit")
    pytest.importorskip("ray")
    r = run_cli(study, *STUDY)
    assert r.exit_code == 0 and "4 runs in 2 processes" in r.output, r.output
    pooled = outputs(study)
    assert {f"models/classifiers/{run}/weights.safetensors" for run in RUNS} <= set(pooled)
    assert sum(k.startswith("metrics/evaluate/") for k in pooled) >= 4
    for engine in (["-S", "executor.kind=slurm", "-S", "executor.slurm.cluster=local"],
                   ["-S", "executor.kind=ray", "-S", "executor.ray.local_cpus=2"],
                   ["-S", "executor.kind=ray", "-S", "executor.ray.local_cpus=2",
                    "-S", "executor.ray.return_files=true"]):
        r = run_cli(study, *STUDY, *engine)
        assert r.exit_code == 0, r.output
        assert "4 runs as " in r.output and "kept from an earlier run" not in r.output
        now = outputs(study)
        assert [k for k in pooled if now.get(k) != pooled[k]] == [] and now.keys() == pooled.keys()
        assert not (study / "checkpoints/cells/train").exists()  # gone once all came back


class KillOnce:
    """The train stage's cell job that kills its own process (SIGKILL, as the OOM killer or a
    preempted node would) for cell `victim` while the file `flag` exists; every call is
    written to `calls` first. The same computation as stages.train._train_one otherwise."""

    def __init__(self, victim: str, flag: Path, calls: Path):
        self.victim, self.flag, self.calls = victim, str(flag), str(calls)

    def __call__(self, state, cell):
        from synthaug.stages.train import _train_one

        with open(self.calls, "a") as f:
            f.write(f"{cell[2]}\n")
        if str(cell[2]) == self.victim and os.path.exists(self.flag):
            os.unlink(self.flag)
            os.kill(os.getpid(), signal.SIGKILL)
        return _train_one(state, cell)


@pytest.mark.cluster
def test_a_killed_cell_fails_the_stage_by_name_and_the_rerun_runs_only_it(
        study, run_cli, monkeypatch):
    pytest.importorskip("submitit")
    import synthaug.pipeline.core.executors as executors
    import synthaug.stages.train as train

    # the package's code is part of each cell's key (test_a_cells_key_follows_...); held
    # still here, where only the resume is under test
    monkeypatch.setattr(executors, "code_fingerprint", lambda: "this code")
    r = run_cli(study, *STUDY)  # the local pool's outputs, to compare with
    assert r.exit_code == 0, r.output
    pooled = outputs(study)
    flag, calls = study / "kill-flag", study / "calls.txt"
    flag.touch()
    # the jobs unpickle KillOnce from this module: its folder on their path
    here = Path(__file__).parent  # (this module imports `test_train`, and one `tests.conftest`)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(here), str(here.parent),
                                                      os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(train, "_train_one", KillOnce("real/cnn/seed1", flag, calls))
    slurm = ["-S", "executor.kind=slurm", "-S", "executor.slurm.cluster=local"]
    r = run_cli(study, *STUDY, *slurm)
    assert r.exit_code == 2, r.output
    assert "1 of 4 cells failed (slurm): cell real/cnn/seed1" in r.output, r.output
    assert "has not produced any output" in r.output.splitlines()[-1]  # how it failed
    assert not flag.exists() and sorted(calls.read_text().split()) == sorted(RUNS)
    kept = list((study / "checkpoints/cells/train/cells").iterdir())
    assert len(kept) == 3  # the three that finished
    calls.unlink()
    r = run_cli(study, *STUDY, *slurm)  # as dvc repro would rerun it
    assert r.exit_code == 0, r.output
    assert "3 of 4 cells kept from an earlier run" in r.output and "1 to run" in r.output
    assert calls.read_text().split() == ["real/cnn/seed1"]  # only the missing cell ran
    assert outputs(study) == pooled
    assert not (study / "checkpoints/cells/train").exists()


def test_a_cells_key_follows_its_recipe_its_inputs_and_the_code(tmp_path, monkeypatch):
    """A kept cell is found again only for the same recipe, the same input contents and the
    same code; the key is the same in every process (no pickle, whose sets follow the hash
    seed)."""
    import synthaug.pipeline.core.executors as executors
    from synthaug.pipeline.core.config import ExecutorConfig
    from synthaug.pipeline.core.executors import Remote, canonical, cell_keys
    from synthaug.stages.params import Params

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.npy").write_bytes(b"1")
    remote = Remote(ExecutorConfig(kind="slurm"), tmp_path / "cells", [tmp_path / "in"])
    p = Params()
    keys = cell_keys(remote, (p,), ["x", "y"])
    assert keys == cell_keys(remote, (Params(),), ["x", "y"]) and keys[0] != keys[1]
    other = p.model_copy(update={"train": p.train.model_copy(update={"epochs": 7})})
    assert cell_keys(remote, (other,), ["x"])[0] != keys[0]
    (tmp_path / "in" / "a.npy").write_bytes(b"2")
    assert cell_keys(remote, (p,), ["x"])[0] != keys[0]
    (tmp_path / "in" / "a.npy").write_bytes(b"1")
    monkeypatch.setattr(executors, "code_fingerprint", lambda: "other code")
    assert cell_keys(remote, (p,), ["x"])[0] != keys[0]
    assert canonical({"b": {3, 1, 2}, "a": Path("x")}) == {"a": "x", "b": [1, 2, 3]}
    import functools  # the sweep's synthesizer: a partial of a module-level function

    plain = canonical(functools.partial(cell_keys, remote, k=1))
    assert plain[0] == "synthaug.pipeline.core.executors.cell_keys" and plain[2] == {"k": 1}
    assert "0x" not in json.dumps(plain)  # no object address: the same in every process


@pytest.mark.cluster
def test_the_slurm_section_becomes_the_job_arrays_sbatch_lines(tmp_path, monkeypatch):
    """On a SLURM cluster (here: an sbatch and an srun that are never run) the section's
    settings reach the batch file submitit writes."""
    pytest.importorskip("submitit")
    from synthaug.pipeline.core.config import SlurmConfig
    from synthaug.pipeline.core.engines import slurm_executor

    for tool in ("sbatch", "srun"):
        (tmp_path / tool).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    cfg = SlurmConfig(partition="gpu", time_min=30, cpus_per_task=4, gpus_per_task=1, mem_gb=16,
                      setup=["source .venv/bin/activate"],
                      additional_parameters={"account": "vision"})
    ex = slurm_executor(cfg, tmp_path / "checkpoints/cells/train")
    assert ex.cluster == "slurm"
    text = ex._executor._make_submission_file_text("python -m x", "0")
    for line in ("--partition=gpu", "--time=30", "--cpus-per-task=4", "--gpus-per-task=1",
                 "--mem=16384M", "--account=vision", "--job-name=synthaug-train"):
        assert f"#SBATCH {line}\n" in text, text
    assert "\nsource .venv/bin/activate\n" in text


@pytest.mark.parametrize("sets", [{}, {"sweep": {"when_variants": ["real+classic", "self-training",
                                                                 "real+vae-unlabelled"],
                                                  "when_models": ["cnn", "efficientnet_lite0"]}}])
def test_check_counts_the_sweeps_cells_as_the_sweep_cuts_them(sets):
    """`synthaug check`'s cells per stage: the sweep's are its jobs (a point each, or one k's
    when points that share generators or pseudo-labels), counted as sweep_run.groups cuts them."""
    from synthaug.pipeline.experiments.plan import fan_out, make_plan
    from synthaug.pipeline.experiments.sweep import todo
    from synthaug.pipeline.experiments.sweep_run import groups
    from synthaug.stages.params import Params

    p = Params.model_validate({**yaml.safe_load(
        (Path(__file__).parent.parent / "params.yaml").read_text()), **sets})
    points, _, _ = todo(p.sweep, p.compose, list(p.sweep.models), None)
    plan = make_plan(p.study, p.sweep, p.compose, {"gan": 1, "vae": 1, "diffusion": 1},
                     {n: s.generator for n, s in p.sample.sets.items()}, None, None, p.augment)
    line = fan_out(plan, p.sweep, p.compose, None, None, len(p.sample.sets) + 2)
    cells = len(p.study.variants) * len(p.study.models) * len(p.study.seeds)
    assert (f"train {cells}, sweep {len(groups(points, p.compose))}, quality "
            f"{len(p.sample.sets) + 2}, train_generator 3") in line


@pytest.mark.cluster
def test_sweep_jobs_and_generator_families_on_an_engine_equal_the_local_pool(
        tmp_path, image_folder, run_cli, repo_root):
    """The sweep's points (submitit's local executor) and train_generator's families (a Ray
    started here): the rows and the weights of the local pool's one-thread workers."""
    pytest.importorskip("submitit")
    pytest.importorskip("ray")
    from test_train_generator import TINY

    image_folder(tmp_path / "images", classes=("a", "b"), per_class=30, size=(12, 12))
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["prepare"].update(source="folder:images", size=12, train_per_class=6,
                             val_fraction=0.2, test_fraction=0.2)
    params["train"].update(epochs=1, batch_size=8, epoch_size=0, patience=0)
    params["augment"].update(pipeline="light")
    params["sweep"].update(models=["lenet5"], real_per_class=[2, 4], ratios=[], seeds=[0, 1],
                           low_data_seeds=[0, 1], when_per_class=[2],
                           when_variants=["real+classic", "more-real"], when_models=["lenet5"],
                           workers=2)
    params["train_generator"].update(device="cpu", workers=2, **TINY)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_cli(tmp_path, "prepare").exit_code == 0
    results = tmp_path / "metrics/sweep/lenet5/results.json"
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]
    weights = lambda: {f: (tmp_path / f"models/generators/{f}/weights.safetensors").read_bytes()
                       for f in ("gan", "vae")}
    runs = {}
    for engine in ([], ["-S", "executor.kind=slurm", "-S", "executor.slurm.cluster=local"]):
        r = run_cli(tmp_path, "sweep", "--no-progress", *engine)
        assert r.exit_code == 0, r.output
        runs[bool(engine)] = strip(json.loads(results.read_text())["rows"])
    assert runs[True] == runs[False] and len(runs[True]) == 2 * 2 + 2 * 2
    gens = {}
    for engine in ([], ["-S", "executor.kind=ray", "-S", "executor.ray.local_cpus=2"]):
        r = run_cli(tmp_path, "train-generator", "gan", "vae", "--no-progress", *engine)
        assert r.exit_code == 0, r.output
        gens[bool(engine)] = weights()
    assert gens[True] == gens[False]
    assert not (tmp_path / "checkpoints/cells/sweep").exists()
    assert not (tmp_path / "checkpoints/cells/train_generator").exists()


@pytest.mark.parametrize("kind, extra", [("slurm", "submitit"), ("ray", "ray")])
def test_an_engine_without_its_extra_is_one_line_naming_the_install(tmp_path, monkeypatch,
                                                                   kind, extra):
    import sys

    from synthaug.pipeline.core.config import ExecutorConfig
    from synthaug.pipeline.core.errors import SynthaugError
    from synthaug.pipeline.core.executors import Remote, run_remote

    monkeypatch.setitem(sys.modules, extra, None)  # `import` then fails as if not installed
    remote = Remote(ExecutorConfig(kind=kind), tmp_path / "cells")
    with pytest.raises(SynthaugError, match=rf"executor.kind: {kind} needs {extra}: pip "
                                            rf"install 'synthaug\[{kind}\]'"):
        list(run_remote(tuple, (), len, ["a"], remote))
    assert not (tmp_path / "cells" / "cells").exists()  # nothing kept, nothing ran


@pytest.mark.cluster
def test_quality_sets_on_ray_returning_their_files_equal_the_local_pool(run_cli, quality_project):
    """quality's sets as Ray tasks whose figures come back as bytes (no shared filesystem):
    the table and every figure of the local pool."""
    pytest.importorskip("ray")
    root, tables, figures = quality_project, [], []
    for engine in ([], ["-S", "executor.kind=ray", "-S", "executor.ray.local_cpus=2",
                        "-S", "executor.ray.return_files=true"]):
        r = run_cli(root, "quality", "--no-progress", "-S", "quality.workers=2", *engine)
        assert r.exit_code == 0, r.output
        tables.append(json.loads((root / "reports/quality/quality.json").read_text()))
        figures.append({f.name: f.read_bytes() for f in (root / "reports/quality/figures").iterdir()
                        if f.name.startswith("closest_")})
    assert tables[0] == tables[1] and len(figures[0]) == 6 and figures[0] == figures[1]


def _write_out(state, item):  # a cell job: writes its output folder, returns a result
    out = Path(item)
    out.mkdir(parents=True)
    (out / "w.bin").write_bytes(bytes(range(state)))
    return {"n": state}


def test_a_kept_cell_puts_its_files_back_and_a_node_without_the_project_is_one_line(
        tmp_path, monkeypatch):
    from synthaug.pipeline.core.cells import restore_cell, run_cell
    from synthaug.pipeline.core.errors import SynthaugError

    monkeypatch.chdir(tmp_path)
    keep = tmp_path / "cells" / "k1"
    assert run_cell(int, (7,), _write_out, "out/a", 0, ["out/a"], str(keep), False,
                    str(tmp_path)) == {"n": 7}
    import shutil

    shutil.rmtree(tmp_path / "out")  # as dvc repro deletes a stage's outs before a rerun
    assert restore_cell(keep, [tmp_path / "out/a"]) == {"n": 7}
    assert (tmp_path / "out/a/w.bin").read_bytes() == bytes(range(7))
    with pytest.raises(SynthaugError, match="every node must see the project at the same path"):
        run_cell(int, (1,), _write_out, "out/b", 0, [], str(keep), False, str(tmp_path / "gone"))
    assert not (tmp_path / "out/b").exists()
