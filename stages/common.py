"""Shared CLI plumbing: the --params / -S options and the one-line error handling."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Callable, Iterator

import typer

from stages.params import Params, load_params
from pipeline.core.errors import SynthaugError

# albumentations (and friends) phone home on import; we are offline-first
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file (YAML)", metavar="FILE",
                                         show_default=True)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-S", metavar="SECTION.KEY=VALUE", help="override a param: section.key=value (as `dvc exp run -S`); repeatable")]


def params_from(params: Path, overrides: list[str] | None) -> Params:
    return load_params(params, overrides or [])


def path_relation(a: Path, b: Path) -> str | None:
    """How folder `a` relates to folder `b` (both resolved), in words; None: apart."""
    if a == b:
        return "is the same folder as"
    if b.is_relative_to(a):
        return "contains"
    if a.is_relative_to(b):
        return "is inside"
    return None


REPORT_PARTS = ("figures", "plots", "report.md", "results.json")  # what `report` replaces


def _claimed(p: Params) -> dict[str, Path]:
    """Every path a stage replaces or reads as a whole, by the setting that names it (the
    report stage replaces only its parts: other outputs may live in paths.report)."""
    out = {f"paths.{k}": Path(v) for k, v in p.paths if k != "report"}
    out.update({f"paths.report ({n})": p.paths.report / n for n in REPORT_PARTS})
    kind, _, rest = p.prepare.source.partition(":")
    if kind == "folder":
        out["the image source (prepare.source)"] = Path(rest)
    return out


def guard_output(p: Params, key: str) -> Path:
    """paths.<key>, once it is certain that replacing it deletes nobody's data: refused (a
    SynthaugError naming both settings) when it is, contains or is inside the image source or
    another stage's output. Checked before any work, on resolved paths (links followed).
    (Under `dvc repro` DVC deletes a stage's outs before it runs: a check stage that runs
    first must call this for every output to protect those.)"""
    out = getattr(p.paths, key)
    mine = Path(os.path.realpath(out))
    for name, other in _claimed(p).items():
        if name == f"paths.{key}":
            continue
        how = path_relation(mine, Path(os.path.realpath(other)))
        if how:
            raise SynthaugError(f"paths.{key}: {out} {how} {name} ({other}); replacing it "
                                f"would delete those files; set paths.{key} to a folder of its own")
    return out


def user_errors(fn: Callable) -> Callable:
    """Turn SynthaugError into `error: <message>` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SynthaugError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def say(msg: str = "") -> None:
    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 speaks for all
        return
    typer.echo(msg)
    sys.stdout.flush()


@contextlib.contextmanager
def output(path: Path, dist, is_dir: bool = True) -> Iterator[Path]:
    """`storage.atomic_output(path)` on rank 0 (or without torchrun); on the other ranks a
    scratch path that vanishes, so every rank runs the same code and only one writes."""
    from pipeline.data.storage import atomic_output

    if dist.main:
        with atomic_output(path, is_dir) as out:
            yield out
        return
    with tempfile.TemporaryDirectory(prefix=f"rank{dist.rank}-") as tmp:
        out = Path(tmp) / path.name
        if is_dir:
            out.mkdir()
        yield out


VariantOpt = Annotated[str | None, typer.Option(
    "--variant", help="training set: a name under compose.variants [default: the first of "
    "study.variants]")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="model [default: train.model]")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="seed [default: train.seed]")]


def study_cell(p: Params, variant: str | None, model: str | None, seed: int | None):
    """Resolve one cell of the study matrix -> (variant, model, seed, run sub-path), with
    train.model / train.seed set to the cell's values and the model's `train.per_model`
    recipe applied."""
    variant = variant or p.study.variants[0]
    if variant not in p.compose.variants:
        raise SynthaugError(f"--variant: unknown variant {variant!r}; defined under "
                            f"compose.variants: {', '.join(p.compose.variants)}")
    if model is not None:
        from stages.params import validate_params

        data = p.model_dump(mode="json")
        data["train"]["model"] = model
        p.train = validate_params(data, "--model").train  # same checks as train.model
    if seed is not None:
        p.train.seed = seed
    p.train = p.train.for_model(p.train.model)  # its train.per_model recipe, if any
    return variant, p.train.model, p.train.seed, p.run_name(variant, p.train.model, p.train.seed)
