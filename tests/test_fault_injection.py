"""prepare, augment, judge, sample, compose and train cut short at every write (an injected
exception that nothing of synthaug catches, standing for SIGKILL, raised at the n-th
file-system write of the run, for every n) leave each output the old complete version or the
new complete version, and the next run completes with nothing left behind. (That a train
cell's three outputs come from one run: test_cell_commit.py.)"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

class Killed(BaseException):
    """Stands for SIGKILL: no `except Exception` of the run catches it."""


WRITES = [(os, "replace"), (os, "rename"), (pathlib.Path, "write_text"),
          (pathlib.Path, "write_bytes"), (np, "save"), (np.lib.format, "open_memmap"),
          (shutil, "rmtree")]


class Injector:
    """Counts the run's file-system writes; raises Killed at the `at`-th (0: never)."""

    def __init__(self, monkeypatch, at: int = 0):
        self.calls, self.at = 0, at
        for owner, name in WRITES:
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name)))

    def _wrap(self, fn):
        def wrapped(*args, **kwargs):
            self.calls += 1
            if self.calls == self.at:
                raise Killed(f"killed at write {self.at}")
            return fn(*args, **kwargs)
        return wrapped


def _content(path: Path):
    """A file's bytes; for JSON, its data without the wall-clock records (`*seconds*`), which
    no two runs share."""
    if path.suffix != ".json":
        return path.read_bytes()

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if "seconds" not in k}
        return [strip(v) for v in x] if isinstance(x, list) else x
    return strip(json.loads(path.read_text()))


def snapshot(root: Path, base: str) -> dict[str, object]:
    """Every file of one output folder (lock files, dvclive's seconds.tsv and a killed run's
    temporary siblings of nested outputs aside: the next run removes those, see `debris`)."""
    d = root / base

    def kept(p: Path) -> bool:
        rel = p.relative_to(d)
        return (p.is_file() and not p.name.endswith(".lock") and "seconds" not in p.name
                and not any(".tmp-" in part or ".old-" in part for part in rel.parts))
    return {p.relative_to(d).as_posix(): _content(p) for p in sorted(d.rglob("*")) if kept(p)
            } if d.is_dir() else {}


def debris(root: Path) -> list[str]:
    return [p.name for p in root.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


# stage -> (its outputs, the stages that run before it, the params its old and new runs differ in)
STAGES = {
    "prepare": (["data/prepared"], [], ("prepare", "seed", 0, 1)),
    "augment": (["data/augmented"], ["prepare"], ("augment", "seed", 0, 1)),
    "judge": (["models/judge"], ["prepare"], ("quality", "seed", 0, 1)),
    "sample": (["data/synthetic/vae-prior"], ["prepare", "train-generator"],
               ("sample", "seed", 0, 1)),
    "compose": (["data/variants"], ["prepare"], ("more-real", "ratio", 1.0, 0.5)),
    "train": (["models/classifiers", "metrics/train", "metrics/evaluate"], ["prepare", "compose"],
              ("train", "lr", 0.003, 0.01)),
}


@pytest.fixture
def make(tmp_path, image_folder):
    """make(name, section, key, value) -> a project folder with its own tiny params."""
    images = image_folder(tmp_path / "images", per_class=12)

    def build(name: str, section: str, key: str, value) -> Path:
        root = tmp_path / name
        root.mkdir()
        params = yaml.safe_load((Path(__file__).parent.parent / "params.yaml").read_text())
        params["prepare"].update(source=f"folder:{images}", size=8, train_per_class=4)
        params["study"].update(variants=["real", "more-real"], models=["lenet5"], seeds=[0])
        # a preset, not auto: the choice's fits add time, not writes (its record is written
        # inside the same atomic output as meta.json)
        params["augment"].update(copies_per_image=1, pipeline="light")
        params["quality"]["epochs"] = 1
        params["train"].update(epochs=1, epoch_size=64)
        params["train"]["per_model"] = {}
        params["train_generator"]["vae"]["steps"] = 4
        params["sample"]["per_class"] = 4
        where = params["compose"]["variants"] if section == "more-real" else params
        where[section][key] = value
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        return root

    return build


def _command(stage: str) -> list[str]:
    return {"train": ["train", "--study-models", "--study-seeds", "--no-figures", "--no-progress"],
            "train-generator": ["train-generator", "vae", "--no-progress"],
            "sample": ["sample", "vae-prior"],
            "augment": ["augment", "--no-progress"], "judge": ["judge", "--no-progress"]
            }.get(stage, [stage])


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_run_killed_at_any_write_leaves_old_or_new_and_reruns_clean(make, run_cli, monkeypatch,
                                                                      stage):
    outs, before_it, (section, key, old_value, new_value) = STAGES[stage]

    import synthaug.pipeline.core.outputs as outputs

    def run(root: Path, at: int = 0) -> Injector:
        held = []  # the run's lock descriptors: a killed process's die with it
        lock = outputs._lock
        with monkeypatch.context() as m:
            m.setattr(outputs, "_lock", lambda path: held.append(lock(path)) or held[-1])
            inj = Injector(m, at)
            try:
                result = run_cli(root, *_command(stage))
            except Killed:
                result = None
            if result is not None and not isinstance(result.exception, Killed):
                assert result.exit_code == 0, result.output
        for fd in held:  # as the kernel does for a killed process
            with contextlib.suppress(OSError):
                os.close(fd)
        return inj

    old = make("old", section, key, old_value)  # the previous complete run
    new = make("new", section, key, new_value)  # the next run's params: another output
    for root in (old, new):
        for s in [*before_it, stage]:
            r = run_cli(root, *_command(s))
            assert r.exit_code == 0, r.output
    before, after = ({o: snapshot(root, o) for o in outs} for root in (old, new))
    assert all(before[o] != after[o] for o in outs)
    total = run(_copy(old, new, "count")).calls
    assert total > 5  # the run does write
    for at in range(1, total + 1):
        root = _copy(old, new, f"kill{at}")
        run(root, at)
        for o in outs:
            assert snapshot(root, o) in (before[o], after[o]), f"{o}: killed at write {at}: mixed"
        run(root)  # the next run completes, and leaves nothing behind
        for o in outs:
            now = snapshot(root, o)
            assert now.keys() == after[o].keys(), f"after a kill at write {at}"
            changed = [f for f in now if now[f] != after[o][f]]
            assert not changed, f"after a kill at write {at}: {o}: {changed}"
        assert not debris(root), (at, debris(root))
        shutil.rmtree(root)


def _copy(old: Path, new: Path, name: str) -> Path:
    """A project with the old outputs and the new params."""
    root = old.parent / name
    shutil.copytree(old, root, ignore=shutil.ignore_patterns("images"))
    shutil.copy(new / "params.yaml", root / "params.yaml")
    return root
