"""Typed params: one pydantic model per params.yaml section, unknown keys rejected.

`load_params(path, overrides)` reads a YAML file, applies `section.key=value` overrides (the
syntax of `dvc exp run -S`, values parsed as YAML) and validates everything before any stage
does work. Every problem becomes a `SynthaugError` with one line naming the key.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt,
                      PositiveFloat, PositiveInt, ValidationError, field_validator,
                      model_validator)

from pipeline.architectures import BUILTIN, LAYER_TYPES, Layer
from pipeline.errors import SynthaugError

BUILTIN_SOURCES = ("mnist5k", "digits")
SOURCE_PREFIXES = ("folder:", "torchvision:")
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _check_device(v: str) -> str:
    if not DEVICE_RE.match(v):
        raise ValueError(f"unknown device {v!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    return v


Device = Annotated[str, AfterValidator(_check_device)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathsConfig(Section):
    """Where stages read and write; relative paths are relative to the working directory."""

    raw: Path = Path("data/raw")  # torchvision data roots
    prepared: Path = Path("data/prepared")  # prepare: train/ val/ test/ packed splits
    model: Path = Path("models/classifier")  # train: config.json + weights.safetensors
    train_metrics: Path = Path("metrics/train")  # train: dvclive dir
    evaluate_metrics: Path = Path("metrics/evaluate")  # evaluate: metrics.json, plots
    figures: Path = Path("reports/figures")


class PrepareConfig(Section):
    source: str = "mnist5k"
    channels: Literal[1, 3] = 1
    size: int = Field(28, ge=8, le=1024)
    resize: Literal["resize", "pad", "center_crop"] = "resize"
    background: int = Field(0, ge=0, le=255)  # fill for padding and transparent pixels
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    train_per_class: PositiveInt | None = None  # low-data regime: k training images per class
    seed: int = 0
    on_bad_image: Literal["error", "skip"] = "error"
    download: bool = False  # torchvision sources only; off by default (offline first)

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        if v in BUILTIN_SOURCES:
            return v
        for prefix in SOURCE_PREFIXES:
            if v.startswith(prefix) and len(v) > len(prefix):
                return v
        raise ValueError(
            f"unknown source {v!r}; allowed: mnist5k, digits, folder:<path>, torchvision:<Name>")

    @model_validator(mode="after")
    def _fractions(self):
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


class TrainConfig(Section):
    model: str = "cnn"
    epochs: PositiveInt = 15
    batch_size: PositiveInt = 64
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: PositiveFloat = 3e-3
    weight_decay: NonNegativeFloat = 1e-4
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # sgd only
    scheduler: Literal["onecycle", "cosine", "step", "none"] = "onecycle"
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    patience: NonNegativeInt = 4  # epochs without val improvement before stopping; 0 = never
    seed: int = 0
    device: Device = "auto"  # auto = cuda, then mps, then cpu
    amp: bool = True  # mixed precision, CUDA only
    threads: NonNegativeInt = 0  # CPU threads for torch; 0 = torch's default


class EvaluateConfig(Section):
    batch_size: PositiveInt = 512
    device: Device = "auto"


class Params(Section):
    paths: PathsConfig = PathsConfig()
    prepare: PrepareConfig = PrepareConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    models: dict[str, list[Layer]] = {}  # custom architectures, by name

    @model_validator(mode="after")
    def _known_model(self):
        clash = sorted(set(self.models) & set(BUILTIN))
        if clash:
            raise ValueError(f"models.{clash[0]}: name taken by a built-in model")
        allowed = sorted(BUILTIN) + sorted(self.models)
        if self.train.model not in allowed:
            raise ValueError(
                f"train.model: unknown model {self.train.model!r}; allowed: {', '.join(allowed)}")
        return self

    def architecture(self, name: str) -> list | None:
        """The custom layer list for `name`, or None for a built-in."""
        return self.models.get(name)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], parsed YAML value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise SynthaugError(f"-S {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise SynthaugError(f"-S {key}: value {raw!r} is not valid YAML ({e.problem})") from None
    if isinstance(value, str) and FLOAT_RE.match(value):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string; users mean the number
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for i, k in enumerate(keys[:-1]):
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise SynthaugError(f"-S {text!r}: {'.'.join(keys[:i + 1])} is not a section")
            node = child
        node[keys[-1]] = value
    return data


def _format(e: ValidationError) -> str:
    err = e.errors()[0]
    # drop the union tags pydantic puts into the location of discriminated layers
    loc = ".".join(str(p) for p in err["loc"] if p not in LAYER_TYPES)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"].startswith("literal_error") or err["type"] == "union_tag_invalid":
        msg = msg.replace("Input should be", "allowed:")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    got = err.get("input")
    tail = "" if err["type"] == "extra_forbidden" or isinstance(got, (dict, list)) else f" (got {got!r})"
    more = f" [and {len(e.errors()) - 1} more]" if len(e.errors()) > 1 else ""
    return f"{loc}: {msg}{tail}{more}" if loc else f"{msg}{tail}{more}"


def validate_params(data: dict, source: str = "params") -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        raise SynthaugError(f"{source}: {_format(e)}") from None


def load_params(path: Path | str = "params.yaml", overrides: list[str] | None = None) -> Params:
    path = Path(path)
    if not path.exists():
        raise SynthaugError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SynthaugError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise SynthaugError(f"{path}: expected a mapping of sections at the top level")
    apply_overrides(data, overrides or [])
    return validate_params(data, str(path))
