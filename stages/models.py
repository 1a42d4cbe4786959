"""`synthaug models`: inspect classifier architectures (built-in, transfer, params.yaml `models:`).

Not a DVC stage: a read-only helper over pipeline/classifiers/summary.py. torch is imported
inside the commands so that `synthaug --help` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthaug.pipeline.classifiers.names import allowed_models, model_kind
from synthaug.stages.params import Params, apply_overrides, validate_params
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.stages.common import ParamsOpt, SetOpt, params_from, say, user_errors

app = typer.Typer(help="Inspect classifier architectures: Keras-style summaries and parameter "
                       "counts of built-in and custom (params.yaml `models:`) models.\n\n"
                       "**Examples**\n\n```\nsynthaug models list\n"
                       "synthaug models summary keras_seed\n```",
                  no_args_is_help=True)

MAX_CHANNELS, MAX_SIDE = 1024, 4096  # beyond: no image synthaug trains on (a typo)
ShapeOpt = Annotated[str | None, typer.Option(
    "--input-shape", "-i", show_default=False,
    help="input shape C,H,W (channels first), e.g. 3,32,32; default: prepare.channels and "
         "prepare.size from the params file, else 1,28,28")]
ClassesOpt = Annotated[int, typer.Option("--classes", "-c", min=1,
                                         help="number of classes (size of the logits)")]


def parse_shape(text: str | None, params: Params) -> tuple[int, int, int]:
    if text is None:  # what `train` would build for the prepared data
        return params.prepare.channels, params.prepare.size, params.prepare.size
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise SynthaugError(f"--input-shape: expected C,H,W as three positive integers, "
                            f"e.g. 1,28,28 (got {text!r})")
    if shape[0] > MAX_CHANNELS or max(shape[1:]) > MAX_SIDE:
        raise SynthaugError(f"--input-shape: at most {MAX_CHANNELS} channels and {MAX_SIDE} "
                            f"pixels a side (prepare.size goes up to 1024; got {text!r})")
    return shape


def _params(path: Path, overrides: list[str] | None, name: str | None = None) -> Params:
    """Params for the `models:` section; a missing file is fine (built-ins, -S models.x=...)."""
    if path.exists():
        return params_from(path, overrides)
    params = validate_params(apply_overrides({}, overrides or []), "-S")
    known = allowed_models()
    if name is not None and model_kind(name, params.models) is None:
        raise SynthaugError(f"unknown model {name!r}: {path} not found, so only the built-ins "
                            f"are known ({', '.join(known)})")
    return params


@app.command("summary")
@user_errors
def summary_cmd(name: Annotated[str, typer.Argument(help="built-in or custom model name")],
                input_shape: ShapeOpt = None, classes: ClassesOpt = 10,
                params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Print a Keras-style table: layers, output shapes (channels last) and parameter counts.

    **Examples**

    ```
    synthaug models summary cnn
    synthaug models summary letters --classes 26 --input-shape 1,128,128
    synthaug models summary efficientnet_lite0 -i 3,32,32
    ```
    """
    p = _params(params, set_, name)
    shape = parse_shape(input_shape, p)
    if model_kind(name, p.models) == "transfer":
        from synthaug.pipeline.classifiers.summary import transfer_summary

        say(transfer_summary(name, shape, classes, p.train))
        return
    from synthaug.pipeline.classifiers.layers import resolve_layers, summary

    say(summary(resolve_layers(name, p.models, shape), shape, classes, name=name))


@app.command("list")
@user_errors
def list_cmd(input_shape: ShapeOpt = None, classes: ClassesOpt = 10,
             params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """List built-in and custom models with their parameter counts for one input shape.

    **Examples**

    ```
    synthaug models list
    synthaug models list --input-shape 3,32,32 --classes 100
    ```
    """
    p = _params(params, set_)
    from synthaug.pipeline.classifiers.summary import model_list

    for line in model_list(parse_shape(input_shape, p), classes, p.models, p.train):
        say(line)
