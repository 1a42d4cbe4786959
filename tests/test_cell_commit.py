"""Issue 17 item 4: a train cell's model folder, training log and test metrics are three atomic
outputs, committed one after the other. A run cut short between (or during) their writes must
leave each of them the old complete version or the new complete version, and where they end
up from different runs, every reader refuses the mix in one line (they share a run id)."""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from synthaug.pipeline.classifiers.runs import check_cell
from synthaug.pipeline.core.errors import SynthaugError
from tests.conftest import one_line_error
from tests.test_train import blob_splits

RUN = Path("real/cnn/seed0")
FOLDERS = {"model": "models/classifiers", "log": "metrics/train", "test": "metrics/evaluate"}
OLD, NEW = ["-S", "train.epochs=1"], ["-S", "train.epochs=2"]
RERUN = "synthaug train --variant real --model cnn --study-seeds"


class Killed(BaseException):
    """Stands for SIGKILL: nothing of the run's own error handling catches it."""


@pytest.fixture
def project(tmp_path, run_cli):
    params = blob_splits(tmp_path)
    params["train"].update(batch_size=16, epoch_size=0, model="cnn")
    params["study"].update(variants=["real"], seeds=[0])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_cli(tmp_path, "compose").exit_code == 0
    return tmp_path


def train(run_cli, root: Path, recipe: list[str]):
    return run_cli(root, "train", "--study-seeds", "--no-progress", "--no-figures", *recipe)


def snapshot(root: Path) -> dict[str, dict[str, bytes]]:
    """Every file of the cell's three folders (and the cell's row file), by folder."""
    out = {}
    for key, base in FOLDERS.items():
        d = root / base / RUN
        out[key] = {p.relative_to(d).as_posix(): p.read_bytes()
                    for p in sorted(d.rglob("*")) if p.is_file()} if d.is_dir() else None
    return out


def run_id(files: dict[str, bytes], key: str) -> str:
    return json.loads(files["config.json" if key == "model" else "metrics.json"])["run_id"]


def version(key: str, files, old, new) -> str:
    """Which complete version a folder is: "old" or "new" (else the test fails)."""
    for name, ref in (("old", old[key]), ("new", new[key])):
        if files is not None and files.keys() == ref.keys() and run_id(files, key) == run_id(ref, key):
            if key != "log":  # the log holds timestamps and seconds; the others are exact
                assert files == ref, f"{key}: a {name} run id with other bytes"
            return name
    raise AssertionError(f"{key}: neither the old nor the new complete version: "
                         f"{None if files is None else sorted(files)}")


def restore(root: Path, snap) -> None:
    for key, base in FOLDERS.items():
        d = root / base / RUN
        shutil.rmtree(d, ignore_errors=True)
        for name, data in snap[key].items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(data)


def _after_call(module, name: str, at: int, counter: list):
    """Wrap module.name to raise Killed right after its `at`-th event."""
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        out = real(*args, **kwargs)
        counter.append(name)
        if len(counter) == at:
            raise Killed(f"after {name}")
        return out
    return wrapped


def inject(monkeypatch, point: str):
    """Kill the run at `point`: during the writes into the temporary folders, or right after
    the 1st / 2nd / 3rd of the cell's atomic commits (test metrics, log, model: the order in
    which the nested outputs close)."""
    import dvclive

    import synthaug.pipeline.classifiers.classifier as classifier
    import synthaug.pipeline.classifiers.metrics as metrics
    import synthaug.stages.train as train_stage

    events: list = []
    if point == "log written":
        monkeypatch.setattr(dvclive.Live, "end", _after_call(dvclive.Live, "end", 1, events))
    elif point == "model written":
        monkeypatch.setattr(classifier, "save_classifier",
                            _after_call(classifier, "save_classifier", 1, events))
    elif point == "test written":
        monkeypatch.setattr(metrics, "write_evaluation",
                            _after_call(metrics, "write_evaluation", 1, events))
    else:  # "commit N"
        at, real = int(point.split()[1]), train_stage.output

        @contextlib.contextmanager
        def output(*args, **kwargs):
            with real(*args, **kwargs) as out:
                yield out
            events.append(args[0])  # committed: renamed into place
            if len(events) == at:
                raise Killed(f"after committing {args[0]}")
        monkeypatch.setattr(train_stage, "output", output)


POINTS = ["log written", "model written", "test written", "commit 1", "commit 2", "commit 3"]


def test_a_cut_short_cell_is_old_new_or_refused(project, run_cli, monkeypatch):
    assert train(run_cli, project, NEW).exit_code == 0
    new = snapshot(project)
    assert train(run_cli, project, OLD).exit_code == 0
    old = snapshot(project)
    ids = {run_id(old[k], k) for k in FOLDERS}
    assert len(ids) == 1 and ids != {run_id(new[k], k) for k in FOLDERS}  # one id per run
    seen = set()
    for point in POINTS:
        restore(project, old)
        with monkeypatch.context() as m, pytest.raises(Killed):  # as a kill: nothing catches it
            inject(m, point)
            train(run_cli, project, NEW)
        state = snapshot(project)
        versions = {k: version(k, state[k], old, new) for k in FOLDERS}
        seen.add(tuple(versions.values()))
        assert not list(project.rglob(".*.tmp-*")), point  # no temporary folders left behind
        dirs = [project / FOLDERS[k] / RUN for k in ("model", "log", "test")]
        if len(set(versions.values())) == 1:
            assert check_cell(*dirs, RERUN) == run_id(state["model"], "model")
            continue
        # a mix: every reader of more than one of the three refuses it in one line
        with pytest.raises(SynthaugError) as e:
            check_cell(*dirs, RERUN)
        assert RERUN in str(e.value) and "\n" not in str(e.value)
        from synthaug.pipeline.report import inputs
        from synthaug.pipeline.report.study import Layout

        layout = Layout(evaluate_metrics=project / FOLDERS["test"],
                        train_metrics=project / FOLDERS["log"],
                        models=project / FOLDERS["model"])
        with pytest.raises(SynthaugError, match="come from different training runs"):
            inputs.cells(layout, {("real", "cnn", 0): RUN})
        if versions["model"] != versions["log"]:
            one_line_error(run_cli(project, "evaluate", "--model", "cnn"),
                           "models/classifiers/real/cnn/seed0/config.json",
                           "metrics/train/real/cnn/seed0/metrics.json", RERUN)
    # the points cover: all old, a mix of each kind, and all new
    assert ("old", "old", "old") in seen and ("new", "new", "new") in seen
    assert ("old", "old", "new") in seen and ("old", "new", "new") in seen
    # a rerun makes the cell whole again, and the report reads it
    assert train(run_cli, project, NEW).exit_code == 0
    assert {run_id(snapshot(project)[k], k) for k in FOLDERS} == {run_id(new["model"], "model")}


def test_the_same_params_give_the_same_run_id(project, run_cli):
    """The id is a content hash of the weights and the recipe: a rerun that changes nothing
    keeps the model folder and test metrics byte-identical (CPU training is deterministic)."""
    assert train(run_cli, project, OLD).exit_code == 0
    first = snapshot(project)
    assert train(run_cli, project, OLD).exit_code == 0
    again = snapshot(project)
    assert first["model"] == again["model"] and first["test"] == again["test"]
    row = json.loads((project / "metrics/study/real.json").read_text())["cnn"]
    assert row["seed0"]["run_id"] == run_id(first["model"], "model")


def test_files_from_before_run_ids_pass_and_a_half_upgraded_cell_does_not(tmp_path):
    model, log, test = (tmp_path / d for d in ("model", "log", "test"))
    for d, name in ((model, "config.json"), (log, "metrics.json"), (test, "metrics.json")):
        d.mkdir()
        (d / name).write_text(json.dumps({"accuracy": 0.5}))
    assert check_cell(model, log, test, RERUN) is None  # none records one: an older synthaug
    (test / "metrics.json").write_text(json.dumps({"accuracy": 0.6, "run_id": "abc"}))
    with pytest.raises(SynthaugError, match=r"test/metrics.json \(run abc\) and .*model/config.json "
                                            r"\(run without an id\)"):
        check_cell(model, log, test, RERUN)
    (test / "metrics.json").write_text("{not json")
    with pytest.raises(SynthaugError, match="cannot be read as JSON"):
        check_cell(None, None, test, RERUN)
