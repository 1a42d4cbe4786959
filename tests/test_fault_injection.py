"""Issue 17: prepare and compose cut short at every write (an injected exception that nothing
of synthaug catches, standing for SIGKILL, raised at the n-th file-system write of the run, for
every n) leave each output the old complete version or the new complete version, and the next
run completes with nothing left behind. (The train cell's three outputs: test_cell_commit.py.)"""
from __future__ import annotations

import contextlib
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


def snapshot(root: Path, base: str) -> dict[str, bytes]:
    """Every file of one output folder (lock files aside)."""
    d = root / base
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")} if d.is_dir() else {}


def debris(root: Path) -> list[str]:
    return [p.name for p in root.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]


@pytest.fixture
def make(tmp_path, image_folder):
    """make(name, prepare_seed, ratio) -> a project folder with its own params."""
    images = image_folder(tmp_path / "images", per_class=12)

    def build(name: str, seed: int, ratio: float) -> Path:
        root = tmp_path / name
        root.mkdir()
        params = yaml.safe_load((Path(__file__).parent.parent / "params.yaml").read_text())
        params["prepare"].update(source=f"folder:{images}", size=8, train_per_class=4, seed=seed)
        params["compose"]["variants"]["more-real"]["ratio"] = ratio
        params["study"]["variants"] = ["real", "more-real"]
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        return root

    return build


@pytest.mark.parametrize("stage", ["prepare", "compose"])
def test_a_run_killed_at_any_write_leaves_old_or_new_and_reruns_clean(make, run_cli, monkeypatch,
                                                                      stage):
    out = {"prepare": "data/prepared", "compose": "data/variants"}[stage]

    import synthaug.pipeline.core.outputs as outputs

    def run(root: Path, at: int = 0) -> Injector:
        held = []  # the run's lock descriptors: a killed process's die with it
        lock = outputs._lock
        with monkeypatch.context() as m:
            m.setattr(outputs, "_lock", lambda path: held.append(lock(path)) or held[-1])
            inj = Injector(m, at)
            try:
                result = run_cli(root, stage)
            except Killed:
                result = None
            if result is not None and not isinstance(result.exception, Killed):
                assert result.exit_code == 0, result.output
        for fd in held:  # as the kernel does for a killed process
            with contextlib.suppress(OSError):
                os.close(fd)
        return inj

    old = make("old", seed=0, ratio=1.0)  # the previous complete run
    # the next run's params: prepare draws other splits; compose takes fewer more-real images
    new = make("new", seed=1 if stage == "prepare" else 0, ratio=1.0 if stage == "prepare" else 0.5)
    for root in (old, new):
        for s in ("prepare", "compose"):
            r = run_cli(root, s)
            assert r.exit_code == 0, r.output
    before, after = snapshot(old, out), snapshot(new, out)
    assert before != after
    total = run(_copy(old, new, "count")).calls
    assert total > 5  # the run does write
    for at in range(1, total + 1):
        root = _copy(old, new, f"kill{at}")
        run(root, at)
        assert snapshot(root, out) in (before, after), f"killed at write {at}: a mixed output"
        run(root)  # the next run completes, and leaves nothing behind
        assert snapshot(root, out) == after, f"after a kill at write {at}"
        assert not debris(root), (at, debris(root))


def _copy(old: Path, new: Path, name: str) -> Path:
    """A project with the old outputs and the new params."""
    root = old.parent / name
    shutil.copytree(old, root, ignore=shutil.ignore_patterns("images"))
    shutil.copy(new / "params.yaml", root / "params.yaml")
    return root
