"""One cell on whatever machine an engine chose (pipeline.core.executors): `run_cell` builds
its state, runs its job and keeps its result and files in a folder of its own
(`keep_cell`), which a rerun puts back (`restore_cell`) instead of running it again."""
from __future__ import annotations

import io
import os
import pickle
import re
import shutil
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from synthaug.pipeline.core.errors import SynthaugError

# a kept cell's tar holds only what its own cell wrote; still, no links out, no absolute paths
SAFE = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}



def _pack(paths: Sequence[str]) -> dict[int, bytes]:
    """The files and folders of `paths` that exist, as tar bytes by position."""
    out = {}
    for n, path in enumerate(paths):
        if os.path.exists(path):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(path, arcname="x")
            out[n] = buf.getvalue()
    return out


def keep_cell(folder: Path, result: Any, files: dict[int, bytes]) -> None:
    """Write a finished cell's folder (atomically: there whole, or not at all)."""
    from synthaug.pipeline.core.outputs import atomic_output

    with atomic_output(folder) as tmp:
        for n, data in files.items():
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(tmp / "files" / str(n), **SAFE)
        (tmp / "result.pkl").write_bytes(pickle.dumps(result))


def run_cell(init: Callable, args: tuple, job: Callable, item: Any, threads: int,
             outputs: Sequence[str], keep: str, ship: bool, cwd: str) -> Any:
    """One cell, on whatever machine the engine chose, in the parent's working folder `cwd`
    (the params' relative paths start there): its state, its job, and its kept folder `keep`
    (result and files). `ship`: return (result, files as bytes) for the parent to keep
    instead (no shared filesystem)."""
    if not os.path.isdir(cwd):
        import socket

        raise SynthaugError(f"{cwd}: no such folder on {socket.gethostname()}; every node must "
                            "see the project at the same path (docs: Scaling out)")
    os.chdir(cwd)
    if threads:
        import torch

        torch.set_num_threads(threads)
    result = job(init(*args), item)
    files = _pack(outputs)
    if ship:
        return result, files
    keep_cell(Path(keep), result, files)
    return result


def restore_cell(folder: Path, outputs: Sequence[Path]) -> Any:
    """A kept cell's result, its files put back in place (atomically, each)."""
    from synthaug.pipeline.core.outputs import atomic_output

    for n, dst in enumerate(outputs):
        src = folder / "files" / str(n) / "x"
        if src.is_dir():
            with atomic_output(dst) as tmp:
                shutil.copytree(src, tmp, dirs_exist_ok=True, symlinks=True)
        elif src.exists():
            with atomic_output(dst, is_dir=False) as tmp:
                shutil.copy2(src, tmp)
    return pickle.loads((folder / "result.pkl").read_bytes())


ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Killed)\b.*)$")


def first_line(e: BaseException) -> str:
    """What went wrong with a cell, in one line: the error a traceback ends with (the last line
    that names one: an engine's message wraps the cell's traceback in log paths), else the
    engine's own first lines (a job killed: `... has not produced any output`)."""
    cause = getattr(e, "cause", None) or e  # a Ray task error carries the cell's own error
    if isinstance(cause, SynthaugError):
        return str(cause)[:300]
    lines = [line for line in str(cause).splitlines() if line.strip()]
    named = [m[1] for line in lines if (m := ERROR_LINE.match(line))]
    return (named[-1] if named else " ".join(x.strip() for x in lines[:2])
            or type(cause).__name__)[:300]
