"""The `synthaug` command: one sub-command per DVC stage, plus export and models tools.

Stage modules import their heavy libraries inside the command, so `--help` starts fast.
"""
from __future__ import annotations

import typer

from stages import (
    augment,
    compose,
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
app.command("prepare")(prepare.command)
app.command("augment")(augment.command)
app.command("judge")(judge.command)
app.command("sample")(sample.command)
app.command("quality")(quality.command)
app.command("compose")(compose.command)
app.command("train")(train.command)
app.command("evaluate")(evaluate.command)
app.command("sweep")(sweep.command)
app.command("report")(report.command)
app.command("export")(export.command)
app.command("train-generator")(train_generator.command)
app.add_typer(models.app, name="models")


def main() -> None:  # pragma: no cover - console entry point
    app()
