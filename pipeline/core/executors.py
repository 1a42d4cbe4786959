"""Where a stage's cells run: here (pipeline.core.pool, the default), as SLURM job arrays
(submitit) or as Ray tasks. The engines are optional extras (`synthaug[slurm]`,
`synthaug[ray]`), imported only when chosen (pipeline.core.engines); the `executor` section
is pipeline.core.config's.

A cell is one item of `pool.imap`: `job(init(*args), item)`, module-level functions and plain
data, so it pickles to any machine. Away from this process every cell runs on its own: it
builds its state, runs, and keeps what it made in a folder of its own under `Remote.folder`,
named by a hash of its recipe (`Remote.key`), the contents of the stage's inputs and this
package's code: its result and a copy of the files it wrote (`Remote.outputs`). The parent
waits for them all, hands back every result, and fails as a whole, naming each failed cell,
when any failed. A rerun finds the kept cells (dvc repro deletes a stage's outs first; the
kept folders lie outside them, under paths.checkpoints), puts their files back and submits
only the others: the resume a preempted or killed job needs. When every cell has come back
the kept folders go.

Files: the cells read the stage's inputs and write its outputs by path, so every node must
see the project folder at the same path (a shared filesystem, as SLURM clusters have). A Ray
cluster without one sets `ray.return_files`: a cell's files then travel back as bytes with
its result, and only the inputs must be on every node.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from synthaug.pipeline.core import engines
from synthaug.pipeline.core.cells import restore_cell
from synthaug.pipeline.core.config import ExecutorConfig
from synthaug.pipeline.core.errors import SynthaugError

@dataclasses.dataclass
class Remote:
    """A stage's cells away from this process: `config` says where; finished cells are kept
    under `folder`/cells (the engine's own files under `folder`/engine). `inputs`: the folders
    the cells read (their contents are part of every cell's key); `outputs(item)`: the files
    or folders that item's cell writes (kept, and put back on a rerun); `key(item)`: what
    identifies the cell (default: init's args and the item)."""
    config: ExecutorConfig
    folder: Path
    inputs: Sequence[Path] = ()
    outputs: Callable[[Any], Sequence[Path]] | None = None
    key: Callable[[Any], Any] | None = None

    @property
    def kind(self) -> str:
        return self.config.kind


def canonical(obj: Any) -> Any:
    """`obj` as plain JSON data, the same in every process (pickles are not: a set's order
    follows the process's hash seed)."""
    from pydantic import BaseModel

    if isinstance(obj, BaseModel):
        return canonical(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [type(obj).__qualname__, canonical({f.name: getattr(obj, f.name)
                                                   for f in dataclasses.fields(obj)})]
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((canonical(v) for v in obj), key=json.dumps)
    if isinstance(obj, enum.Enum):
        return canonical(obj.value)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, functools.partial):
        return [canonical(obj.func), canonical(obj.args), canonical(obj.keywords)]
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{obj.__module__}.{obj.__qualname__}"
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # a numpy scalar
        return obj.item()
    return repr(obj)


def _hash_files(h: Any, root: Path) -> None:
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        h.update(f"{f.relative_to(root) if f != root else f.name}\0".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)


def code_fingerprint() -> str:
    """This package's code (its .py files), Python's and torch's versions."""
    from importlib.metadata import PackageNotFoundError, version

    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256(sys.version.encode())
    try:
        h.update(version("torch").encode())
    except PackageNotFoundError:
        pass
    for part in ("pipeline", "generators", "stages"):
        for f in sorted((root / part).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def cell_keys(remote: Remote, args: tuple, items: Sequence[Any]) -> list[str]:
    """Each item's folder name under `remote.folder`/cells: a hash of its recipe, the
    contents of the inputs and the code."""
    base = hashlib.sha256(code_fingerprint().encode())  # the folder names the stage
    for path in remote.inputs:
        if Path(path).exists():
            _hash_files(base, Path(path))
    keys = []
    for item in items:
        h = base.copy()
        what = remote.key(item) if remote.key else (args, item)
        h.update(json.dumps(canonical(what), sort_keys=True).encode())
        keys.append(h.hexdigest()[:20])
    return keys


def run_remote(init: Callable, args: tuple, job: Callable, items: Sequence[Any],
               remote: Remote, torch_threads: bool = True,
               describe: Callable[[Any], str] | None = None,
               say: Callable[[str], None] = print) -> Iterator[tuple[int, Any]]:
    """pool.imap's results (index, result) for `items` run by `remote`'s engine, kept cells
    first, then the others as they finish; a SynthaugError naming every failed cell once all
    have come back."""
    describe = describe or str
    cells = Path(remote.folder) / "cells"
    keys = cell_keys(remote, args, items)
    outs = [list(remote.outputs(item)) if remote.outputs else [] for item in items]
    todo = []
    for i, key in enumerate(keys):
        if (cells / key / "result.pkl").exists():
            yield i, restore_cell(cells / key, outs[i])
        else:
            todo.append(i)
    if kept := len(items) - len(todo):
        say(f"{kept} of {len(items)} cells kept from an earlier run (under {cells}); "
            f"{len(todo)} to run")
    failed: list[tuple[int, str]] = []
    if todo:
        engine = engines.slurm if remote.kind == "slurm" else engines.ray_tasks
        for i, result, error in engine(init, args, job, items, todo, remote, torch_threads,
                                       [str(cells / k) for k in keys], outs):
            if error is not None:
                failed.append((i, error))
                say(f"{describe(items[i])}: failed: {error}")
                continue
            yield i, result
    if failed:
        failed.sort()
        names = ", ".join(describe(items[i]) for i, _ in failed)
        raise SynthaugError(
            f"{len(failed)} of {len(items)} cells failed ({remote.kind}): {names} (first: "
            f"{failed[0][1]}); the {len(items) - len(failed)} others are kept under {cells}: "
            "rerun to run only the failed ones")
    for key in keys:  # every cell came back: the stage commits its outputs now
        shutil.rmtree(cells / key, ignore_errors=True)
        (cells / f".{key}.lock").unlink(missing_ok=True)  # atomic_output's
    shutil.rmtree(engines.engine_folder(remote.folder), ignore_errors=True)
    for empty in (cells, Path(remote.folder) / "engine", Path(remote.folder)):
        with contextlib.suppress(OSError):  # another run's cells or logs are still there
            empty.rmdir()
