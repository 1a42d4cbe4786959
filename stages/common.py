"""Shared CLI glue: -p / -S options, the output guard, rank-aware atomic outputs, one-line errors."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Callable, Iterator

import typer

from synthaug.stages.params import Params, load_params
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.core.reread import SettingsRead

# albumentations (and friends) phone home on import; we are offline-first
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file (YAML)", metavar="FILE",
                                         show_default=True)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-S", metavar="SECTION.KEY=VALUE", help="override a param: section.key=value (as `dvc exp run -S`); repeatable")]


# the params this command read, checked again before it commits (params_unchanged)
PARAMS_READ = SettingsRead()
params_unchanged = PARAMS_READ.check


def params_from(params: Path, overrides: list[str] | None) -> Params:
    p = load_params(params, overrides or [])
    PARAMS_READ.record(params, lambda: load_params(params, overrides or []).model_dump(mode="json"),
                       p.model_dump(mode="json"))
    return p


def path_relation(a: Path, b: Path) -> str | None:
    """How folder `a` relates to folder `b` (both resolved), in words; None: apart."""
    return ("is the same folder as" if a == b else "contains" if b.is_relative_to(a)
            else "is inside" if a.is_relative_to(b) else None)


REPORT_PARTS = ("figures", "plots", "report.md", "results.json")  # report replaces only these


def _claimed(p: Params) -> dict[str, Path]:
    """Every path a stage replaces or reads as a whole, by the setting that names it."""
    out = {f"paths.{k}": Path(v) for k, v in p.paths if k != "report"}
    out.update({f"paths.report ({n})": p.paths.report / n for n in REPORT_PARTS})
    kind, _, rest = p.prepare.source.partition(":")
    if kind == "folder":
        out["the image source (prepare.source)"] = Path(rest)
    return out


def guard_output(p: Params, key: str) -> Path:
    """paths.<key>, once it is certain that replacing it deletes nobody's data: refused (a
    SynthaugError naming both settings) when it is, contains or is inside the image source or
    another stage's output, or when it is a folder no synthaug stage wrote; on resolved paths
    (links followed), before any work. (`dvc repro`
    deletes a stage's outs before it runs: a stage that checks first must check them all.)"""
    from synthaug.pipeline.core.outputs import check_replaceable

    out = getattr(p.paths, key)
    mine = Path(os.path.realpath(out))
    for name, other in _claimed(p).items():
        if name == f"paths.{key}":
            continue
        how = path_relation(mine, Path(os.path.realpath(other)))
        if how:
            raise SynthaugError(f"paths.{key}: {out} {how} {name} ({other}); replacing it "
                                f"would delete those files; set paths.{key} to a folder of its own")
    try:  # a folder no stage wrote (a user's): refused before the work, not only at the commit
        check_replaceable(Path(out), is_dir=True)
    except SynthaugError as e:
        raise SynthaugError(f"paths.{key}: {e}") from None
    return out


def user_errors(fn: Callable) -> Callable:
    """Turn SynthaugError into `error: <message>` on stderr and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        PARAMS_READ.clear()  # this command's, not an earlier one's (one process, many calls)
        try:
            out = fn(*args, **kwargs)
            params_unchanged()
            return out
        except SynthaugError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def say(msg: str = "") -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 speaks for all
        typer.echo(msg)
        sys.stdout.flush()


@contextlib.contextmanager
def output(path: Path, dist, is_dir: bool = True) -> Iterator[Path]:
    """`storage.atomic_output(path)` on rank 0 (or without torchrun); on the other ranks a
    scratch path that vanishes, so every rank runs the same code and only one writes."""
    from synthaug.pipeline.core.outputs import atomic_output

    if dist.main:
        with atomic_output(path, is_dir) as out:
            yield out
            params_unchanged()  # made with the params read at the start, or not committed
        return
    with tempfile.TemporaryDirectory(prefix=f"rank{dist.rank}-") as tmp:
        out = Path(tmp) / path.name
        if is_dir:
            out.mkdir()
        yield out
