"""The one place a model name resolves: its kind and the names allowed.

- built-in: a layer list of `architectures.BUILTIN` (lenet5, cnn, resnet_small, ...);
- transfer: an ImageNet backbone of `transfer.py` (TRANSFER_MODELS);
- custom: a layer list under params.yaml's `models:` (it may not take a built-in name).

Params validation, the model builder, `synthaug models` and the study's scheduling all ask
here. No torch import: validation and `--help` stay fast.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from synthaug.pipeline.classifiers.architectures import BUILTIN

TRANSFER_MODELS = ("efficientnet_lite0", "resnet18", "mobilenet_v3_small")
Kind = Literal["builtin", "transfer", "custom"]


def allowed_models(custom: Iterable[str] = ()) -> list[str]:
    """Every model name a recipe may use: built-ins, transfer models, then custom ones."""
    return [*sorted(BUILTIN), *TRANSFER_MODELS, *sorted(custom)]


def model_kind(name: str, custom: Iterable[str] = ()) -> Kind | None:
    """builtin, transfer or custom; None for a name that is none of them."""
    if name in BUILTIN:
        return "builtin"
    if name in TRANSFER_MODELS:
        return "transfer"
    return "custom" if name in set(custom) else None


def unknown_model(where: str, name: str, custom: Iterable[str] = ()) -> str | None:
    """The one-line complaint about `name` at setting `where`, or None when it is allowed."""
    if model_kind(name, custom) is not None:
        return None
    return f"{where}: unknown model {name!r}; allowed: {', '.join(allowed_models(custom))}"


def taken_names(custom: Iterable[str]) -> list[str]:
    """Custom model names that a built-in or transfer model already has."""
    return sorted(set(custom) & (set(BUILTIN) | set(TRANSFER_MODELS)))
