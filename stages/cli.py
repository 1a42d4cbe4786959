"""The `synthaug` command: one sub-command per DVC stage, plus export and models tools.

Stage modules import their heavy libraries inside the command, so `--help` starts fast. Every
stage command records what it cost (`timed`); here, not in the stage modules, so that timing
code is no dependency of any DVC stage's outputs.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

import typer

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.stages.common import params_from, user_errors
from synthaug.stages import (
    augment,
    check,
    compose,
    crossval,
    evaluate,
    export,
    judge,
    models,
    prepare,
    quality,
    report,
    sample,
    sweep,
    train,
    train_generator,
)

app = typer.Typer(
    name="synthaug",
    help="Does synthetic data make my CNN better? Stages of the synthaug study "
         "(run them all with `dvc repro`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # re-flows docstring paragraphs in --help
)
# `synthaug --help` lists the stages in the order `dvc repro` runs them (evaluate, which the
# train stage runs too, after train), then the tools
app.command("check")(check.command)
app.command("prepare")(prepare.command)
app.command("augment")(augment.command)
app.command("judge")(judge.command)
app.command("train-generator")(train_generator.command)
app.command("sample")(sample.command)
app.command("quality")(quality.command)
app.command("compose")(compose.command)
app.command("train")(train.command)
app.command("evaluate")(evaluate.command)
app.command("sweep")(sweep.command)
app.command("crossval")(crossval.command)
app.command("report")(report.command)
app.command("export")(export.command)
app.add_typer(models.app, name="models")
UNTIMED = {"export"}  # a tool, not a DVC stage


def _check_timings(folder: Path) -> None:
    """A SynthaugError when `folder` (paths.timings/STAGE) cannot become a folder: a file is
    on its way, or its nearest existing folder is not writable."""
    for d in (folder, *folder.parents):
        if d.is_dir():
            if not os.access(d, os.W_OK):
                raise SynthaugError(f"paths.timings: {d} is not writable; set paths.timings to "
                                    "a folder you can write")
            return
        if d.exists() or d.is_symlink():
            raise SynthaugError(f"paths.timings: {d} is a file, not a folder; set "
                                "paths.timings to a folder (the default: metrics/timings)")


def timed(stage: str, command: Callable) -> Callable:
    """`command`, writing paths.timings/STAGE.json when it succeeds (atomically; under torchrun
    rank 0 only): wall and CPU seconds, peak memory and the machine (pipeline.core.timing).
    A command that runs one cell of a matrix stage returns the cell's sub-path, and its file
    is paths.timings/STAGE/CELL.json (train: VARIANT/MODEL, parallel cells never clash)."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from synthaug.pipeline.core.timing import Stopwatch

        watch = Stopwatch()
        main = os.environ.get("RANK", "0") == "0"
        if main:  # the timing file can be written: said before the work, not after its commit
            p = params_from(kwargs.get("params", Path("params.yaml")), kwargs.get("set_"))
            _check_timings(p.paths.timings / stage)
        cell = command(*args, **kwargs)
        if main:
            from synthaug.pipeline.core.outputs import atomic_output

            name = Path(stage, *([str(cell)] if cell else []))
            record = watch.record(stage=stage, cell=None if cell is None else str(cell))
            with atomic_output(p.paths.timings / name.parent / f"{name.name}.json", is_dir=False) as f:
                f.write_text(json.dumps(record, indent=2) + "\n")
        return cell
    return wrapper


for info in app.registered_commands:  # the stages, timed
    if info.name not in UNTIMED:
        info.callback = user_errors(timed(info.name.replace("-", "_"), info.callback))


def main() -> None:  # pragma: no cover - console entry point
    app()
