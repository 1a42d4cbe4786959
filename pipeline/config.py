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
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    WrapValidator,
    field_validator,
    model_validator,
)

from pipeline.architectures import BUILTIN, LAYER_TYPES, Layer
from pipeline.errors import SynthaugError

BUILTIN_SOURCES = ("mnist5k", "digits")
SOURCE_PREFIXES = ("folder:", "torchvision:")
# ImageNet-pretrained classifiers (pipeline/transfer.py); named here so that validation and
# `--help` need no torch import
TRANSFER_MODELS = ("efficientnet_lite0", "resnet18", "mobilenet_v3_small")
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
    augmented: Path = Path("data/augmented")  # augment: classic copies of the train split
    variants: Path = Path("data/variants")  # compose: one packed training set per variant
    models: Path = Path("models/classifiers")  # train: <variant>/<model>/seed<N>/ model folders
    train_metrics: Path = Path("metrics/train")  # train: <variant>/<model>/seed<N>/ dvclive
    evaluate_metrics: Path = Path("metrics/evaluate")  # evaluate: <variant>/<model>/seed<N>/
    report: Path = Path("reports")  # report: report.md, results.json, figures/
    generators: Path = Path("models/generators")  # train_generator: <family>/ model folders
    generator_metrics: Path = Path("metrics/generators")  # train_generator: <family>/ dvclive
    checkpoints: Path = Path("checkpoints")  # resume state, outside DVC outs (not in git)
    synthetic: Path = Path("data/synthetic")  # sample: <set>/ packed synthetic sets + figures
    judge: Path = Path("models/judge")  # judge: the real-trained classifier quality relies on
    quality: Path = Path("reports/quality")  # quality: quality.md, quality.json, figures
    sweep: Path = Path("metrics/sweep")  # sweep: <model>/results.json, one row per point


AUGMENT_PRESETS = ("light", "medium", "heavy", "randaugment", "trivialaugment", "autoaugment",
                   "augmix")
VARIANT_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")
REAL_PARTS = ("real", "classic")  # a variant's non-synthetic parts


def _check_spec(v: str | list) -> str | list:
    """Cheap shape check of an augmentation spec; names and arguments are checked by
    pipeline.augment.build_augmenter (it needs albumentations) before any work."""
    if isinstance(v, str):
        if v not in AUGMENT_PRESETS:
            raise ValueError(f"unknown preset {v!r}; allowed: {', '.join(AUGMENT_PRESETS)} "
                             "or a list of {transform: Name, ...} steps")
        return v
    if not v:
        raise ValueError("an empty list; give a preset name or at least one step")
    for i, step in enumerate(v):
        if not isinstance(step.get("transform"), str):
            raise ValueError(f"step {i} needs `transform: <Name>`")
    return v


AugmentSpec = Annotated[str | list[dict[str, Any]], AfterValidator(_check_spec)]


class PrepareConfig(Section):
    source: str = "mnist5k"
    channels: Literal[1, 3] = 1
    size: int = Field(28, ge=8, le=1024)
    resize: Literal["resize", "pad", "center_crop"] = "resize"
    background: int = Field(0, ge=0, le=255)  # fill for padding and transparent pixels
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    train_per_class: PositiveInt | None = 50  # low-data regime: k training images per class
    seed: int = 0
    on_bad_image: Literal["error", "skip"] = "error"
    download: bool = False  # torchvision sources only; off by default (offline first)
    # folder sources: a file with more pixels (read from its header, before decoding) is a bad
    # image; bounds the memory one picture can take. None: only PIL's decompression-bomb guard
    max_pixels: PositiveInt | None = 64_000_000

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


# --- batched on-device online augmentation (pipeline/batch_augment.py) -----------------------
# Before TrainConfig, whose `batch_augment` field is a BatchAugmentSpec; `_format` (further
# down) turns a nested config's error into one line and is looked up only when it runs.

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class BatchAugmentConfig(Section):
    """Per-image random ops on whole float batches, on the training device. Each op runs on an
    image with its own probability; the defaults are the identity (every p = 0).

    rotate / shear: degrees, drawn in [-x, x]; translate: fraction of the size, in [-x, x];
    scale: (min, max) zoom; erase_scale: (min, max) fraction of the area of one erased
    rectangle (set to 0, the background); noise_sigma: Gaussian noise std on the [0, 1] scale;
    brightness / contrast: factors drawn in [1 - x, 1 + x] (torchvision ColorJitter's meaning).
    """

    rotate: float = Field(0.0, ge=0.0, le=180.0)
    translate: float = Field(0.0, ge=0.0, le=0.5)
    scale: tuple[PositiveFloat, PositiveFloat] = (1.0, 1.0)
    shear: float = Field(0.0, ge=0.0, lt=60.0)
    p_affine: Probability = 0.0
    erase_p: Probability = 0.0
    erase_scale: tuple[Probability, Probability] = (0.02, 0.1)
    noise_p: Probability = 0.0
    noise_sigma: float = Field(0.05, ge=0.0, le=1.0)
    jitter_p: Probability = 0.0
    brightness: float = Field(0.0, ge=0.0, le=1.0)
    contrast: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("scale", "erase_scale"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: expected (min, max), got ({lo}, {hi})")
        if self.erase_scale[1] == 0.0 and self.erase_p > 0:
            raise ValueError("erase_scale: the largest area must be > 0 when erase_p > 0")
        return self


# Digit-safe, like augment.py's presets of the same names: no flips, no colour, small
# geometry; `medium` mirrors the albumentations `medium` preset minus its elastic step.
BATCH_PRESETS: dict[str, BatchAugmentConfig] = {
    "light": BatchAugmentConfig(rotate=8, translate=0.05, scale=(0.95, 1.05), p_affine=0.8),
    "medium": BatchAugmentConfig(
        rotate=12, translate=0.08, scale=(0.9, 1.1), shear=8, p_affine=0.9,
        erase_p=0.3, erase_scale=(0.01, 0.06), noise_p=0.3, noise_sigma=0.05,
        jitter_p=0.5, brightness=0.2, contrast=0.2),
    "heavy": BatchAugmentConfig(
        rotate=20, translate=0.12, scale=(0.8, 1.15), shear=15, p_affine=1.0,
        erase_p=0.5, erase_scale=(0.02, 0.12), noise_p=0.4, noise_sigma=0.1,
        jitter_p=0.7, brightness=0.35, contrast=0.35),
}


def _check_batch_spec(v: Any) -> str | BatchAugmentConfig:
    """A preset name or a mapping of BatchAugmentConfig fields, with one-line errors (a plain
    union would report every branch's failure)."""
    if isinstance(v, str):
        if v not in BATCH_PRESETS:
            raise ValueError(f"unknown preset {v!r}; allowed: {', '.join(BATCH_PRESETS)} or a "
                             f"mapping of {', '.join(BatchAugmentConfig.model_fields)}")
        return v
    if isinstance(v, BatchAugmentConfig):
        return v
    if isinstance(v, dict):
        try:
            return BatchAugmentConfig.model_validate(v)
        except ValidationError as e:
            raise ValueError(_format(e)) from None
    raise ValueError(f"expected a preset name ({', '.join(BATCH_PRESETS)}) or a mapping")


BatchAugmentSpec = Annotated[Literal["light", "medium", "heavy"] | BatchAugmentConfig,
                             WrapValidator(lambda v, handler: handler(_check_batch_spec(v)))]


def resolve_batch_augment(spec: str | BatchAugmentConfig | dict) -> BatchAugmentConfig:
    """The config a spec names: a preset's (a copy: presets stay untouched) or the spec itself."""
    try:
        v = _check_batch_spec(spec)
    except ValueError as e:
        raise SynthaugError(f"batch_augment: {e}") from None
    return BATCH_PRESETS[v].model_copy() if isinstance(v, str) else v


class TrainConfig(Section):
    model: str = "cnn"
    epochs: PositiveInt = 6
    batch_size: PositiveInt = 64
    epoch_size: NonNegativeInt = 1024  # samples per epoch, from back-to-back shuffled passes;
    # every variant gets the same steps whatever its size (0: one pass per epoch)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: PositiveFloat = 3e-3
    weight_decay: NonNegativeFloat = 1e-4
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # sgd only
    scheduler: Literal["onecycle", "cosine", "step", "none"] = "onecycle"
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    patience: NonNegativeInt = 3  # epochs without val improvement before stopping; 0 = never
    seed: int = 0
    device: Device = "auto"  # auto = cuda, then mps, then cpu
    amp: bool = True  # mixed precision, CUDA only
    cpu_bf16: bool = True  # bf16 autocast on CPUs with native bf16 (AVX512-BF16, AMX)
    channels_last: bool = True  # NHWC memory layout: faster convolutions on CPU and GPU
    threads: NonNegativeInt = 0  # CPU threads for torch; 0 = torch's default
    online_augment: AugmentSpec | None = None  # preset or steps applied each epoch (CPU)
    workers: NonNegativeInt | None = None  # online augmentation processes; None = auto
    # per-image random affine/erase/noise/jitter on each batch, on the training device
    batch_augment: BatchAugmentSpec | None = None
    load: Literal["auto", "memory", "mmap"] = "auto"  # training data: resident tensor or mmap
    compile: bool = False  # torch.compile the model (a one-off compile, then faster steps)
    # transfer models only (TRANSFER_MODELS)
    strategy: Literal["linear_probe", "finetune", "gradual_unfreeze"] = "finetune"
    input_size: int = Field(32, ge=16, le=1024)  # images are resized to this inside the model
    backbone_lr_mult: PositiveFloat = 1.0  # backbone lr = lr * this (finetune, gradual_unfreeze)
    unfreeze_every: PositiveInt = 1  # gradual_unfreeze: epochs per newly unfrozen block group
    freeze_bn: bool = False  # backbone BatchNorm keeps ImageNet running stats (eval) in training
    weights: Path | None = None  # ImageNet weights file; default: package / torch hub cache
    download_weights: bool = False  # torchvision models: allow downloading into the hub cache
    # model name -> recipe fields that replace the ones above when that model trains (a
    # pretrained network wants a lower rate and fewer, shorter epochs than one from scratch)
    per_model: dict[str, dict[str, Any]] = {
        "efficientnet_lite0": {"epochs": 3, "epoch_size": 1024, "batch_size": 32, "lr": 0.002,
                               "backbone_lr_mult": 0.5, "freeze_bn": True, "input_size": 40,
                               "cpu_bf16": False}}

    @field_validator("per_model")
    @classmethod
    def _recipes(cls, v: dict) -> dict:
        for name, fields in v.items():
            bad = sorted(set(fields) - set(cls.model_fields) | set(fields) & {"model", "seed",
                                                                             "per_model"})
            if bad:
                raise ValueError(f"{name}.{bad[0]}: not a per-model recipe field")
            try:  # each value valid where it lands
                TrainConfig.model_validate(fields)
            except ValidationError as e:
                raise ValueError(f"{name}.{_format(e)}") from None
        return v

    def for_model(self, name: str, seed: int | None = None) -> TrainConfig:
        """This recipe for `name`: its `per_model` fields on top, model (and seed) set."""
        data = self.model_dump()
        data.update(self.per_model.get(name, {}), model=name, per_model={})
        if seed is not None:
            data["seed"] = seed
        return TrainConfig.model_validate(data)


class AugmentConfig(Section):
    """Offline classic augmentation of the train split (`synthaug augment`)."""

    pipeline: AugmentSpec = "medium"  # preset name or list of {transform: Name, **args}
    copies_per_image: PositiveInt = 4
    seed: int = 0
    workers: NonNegativeInt = 0  # processes; 0 = all cores


class VariantConfig(Section):
    """One training set of the study: its parts, how much synthetic data, the quality gate and
    optional on-the-fly augmentation.

    Parts: `real` (the prepared train split), `classic` (the augment stage's copies) or the
    name of a synthetic set under `sample.sets`. Synthetic parts contribute `ratio` synthetic
    images per real training image, or `per_class` images per class, split evenly over the
    synthetic parts (neither: every image of each set).
    """

    parts: list[str] = Field(default=["real"], min_length=1)
    ratio: PositiveFloat | None = None  # synthetic : real images (real = the train split's size)
    per_class: PositiveInt | None = None  # or synthetic images per class, all synthetic parts
    gate: bool = False  # filter synthetic parts through compose.gate first
    online_augment: AugmentSpec | None = None  # applied each epoch while training on it

    @model_validator(mode="after")
    def _amount(self):
        if self.ratio is not None and self.per_class is not None:
            raise ValueError("give ratio or per_class, not both")
        if len(set(self.parts)) != len(self.parts):
            raise ValueError(f"parts: {self.parts} names a part twice")
        return self

    def synthetic_parts(self) -> list[str]:
        return [part for part in self.parts if part not in REAL_PARTS]


class GateConfig(Section):
    """The quality gate for synthetic parts of variants with `gate: true`."""

    tau: float = Field(0.9, ge=0.0, le=1.0)  # keep images the judge gives their label >= tau
    drop_near_copies: bool = True  # drop near-copies of training images (quality.copy_threshold)


class QualityConfig(Section):
    """`synthaug judge` and `synthaug quality`: how synthetic sets are scored.

    The judge is a classifier trained on the real train split with this recipe (TrainConfig's
    defaults, with `model`, `epochs` and `seed` from here; not the `train` section, so that
    tuning it leaves the quality scores valid); its penultimate layer is the
    domain feature space of FID-domain, KID and precision/recall/density/coverage, and its
    confidence drives the quality gate. CAS trains the same recipe on each synthetic set alone
    and tests it on the real test split.
    """

    model: str = "cnn"
    epochs: PositiveInt = 4
    seed: int = 0
    device: Device = "auto"
    k: PositiveInt = 5  # nearest neighbours for precision / recall / density / coverage
    # precision leaves out the balls of this share of real images with the largest k-NN radii
    # (outliers' balls are wide enough to hold noise)
    outlier_radii: float = Field(0.1, ge=0.0, lt=1.0)
    kid_subset_size: PositiveInt = 100
    copy_threshold: float = Field(0.5, gt=0.0, le=1.0)  # near-copy: distance to the nearest
    # training image < this x that training image's distance to its own nearest neighbour
    imagenet_features: bool = True  # also FID in EfficientNet-Lite0 features (package weights)
    cas: bool = True  # train a classifier per set (the slowest metric)

class SweepConfig(Section):
    """`synthaug sweep`: accuracy against the amount of data, one dvc cell per model.

    real_per_class: real-only training sets of k images per class, drawn from the full train
    pool exactly as `prepare.train_per_class` draws (nested: the k=5 set lies inside k=10).
    ratios: `ratio_variant` re-composed with this many synthetic images per real one. The
    study's own cells fill in k = prepare.train_per_class and ratios 0 (real) and the
    variant's own ratio, so those need no cell here.
    """

    models: list[str] = ["cnn", "efficientnet_lite0"]
    real_per_class: list[PositiveInt] = [5, 10, 20, 100]
    ratio_variant: str = "real+diffusion"
    ratios: list[PositiveFloat] = [2.0]
    seeds: list[int] = [0, 1, 2]


class StudyConfig(Section):
    """The comparison matrix: every variant x model x seed is one train + evaluate cell."""

    variants: list[str] = ["real", "real+classic", "real+gan", "real+vae", "real+diffusion",
                           "real+all", "synthetic-only"]
    models: list[str] = ["cnn", "efficientnet_lite0"]
    seeds: list[int] = [0, 1, 2]


def _default_variants() -> dict[str, VariantConfig]:
    v = VariantConfig
    return {
        "real": v(),
        "real+classic": v(parts=["real", "classic"]),
        "real+online": v(online_augment="medium"),  # fresh classic copies every epoch
        "real+gan": v(parts=["real", "gan-prior"], ratio=1.0),
        "real+vae": v(parts=["real", "vae-prior"], ratio=1.0),
        "real+diffusion": v(parts=["real", "diffusion-ddim"], ratio=1.0),
        "real+all": v(parts=["real", "gan-prior", "vae-prior", "diffusion-ddim"], ratio=1.0),
        "synthetic-only": v(parts=["diffusion-ddim"], ratio=1.0),
    }


class ComposeConfig(Section):
    seed: int = 0  # which synthetic images a variant takes from its sets
    gate: GateConfig = GateConfig()
    variants: dict[str, VariantConfig] = Field(default_factory=_default_variants)

    @field_validator("variants")
    @classmethod
    def _names(cls, v: dict) -> dict:
        for name in v:
            if not VARIANT_RE.match(name):
                raise ValueError(f"variant name {name!r}: use letters, digits and _ . + - only")
        return v


class EvaluateConfig(Section):
    batch_size: PositiveInt = 512
    device: Device = "auto"


# after Section and Device, which generators.config builds on (generators/__init__.py
# imports this module first, so either import order works)
from generators.config import SampleConfig, TrainGeneratorConfig


class Params(Section):
    paths: PathsConfig = PathsConfig()
    prepare: PrepareConfig = PrepareConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    augment: AugmentConfig = AugmentConfig()
    compose: ComposeConfig = ComposeConfig()
    study: StudyConfig = StudyConfig()
    sweep: SweepConfig = SweepConfig()
    train_generator: TrainGeneratorConfig = TrainGeneratorConfig()
    sample: SampleConfig = SampleConfig()
    quality: QualityConfig = QualityConfig()
    models: dict[str, list[Layer]] = {}  # custom architectures, by name

    @model_validator(mode="after")
    def _known_model(self):
        clash = sorted(set(self.models) & (set(BUILTIN) | set(TRANSFER_MODELS)))
        if clash:
            raise ValueError(f"models.{clash[0]}: name taken by a built-in model")
        allowed = sorted(BUILTIN) + list(TRANSFER_MODELS) + sorted(self.models)
        if self.train.model not in allowed:
            raise ValueError(
                f"train.model: unknown model {self.train.model!r}; allowed: {', '.join(allowed)}")
        return self

    @model_validator(mode="after")
    def _study(self):
        for name in self.study.variants:
            if name not in self.compose.variants:
                raise ValueError(f"study.variants: {name!r} is not defined under compose.variants "
                                 f"(defined: {', '.join(self.compose.variants)})")
        for name, variant in self.compose.variants.items():
            for part in variant.synthetic_parts():
                if part not in self.sample.sets:
                    raise ValueError(
                        f"compose.variants.{name}.parts: {part!r} is neither real, classic nor "
                        f"a set under sample.sets ({', '.join(self.sample.sets) or 'none'})")
        allowed = set(BUILTIN) | set(TRANSFER_MODELS) | set(self.models)
        if self.quality.model not in allowed:
            raise ValueError(f"quality.model: unknown model {self.quality.model!r}; allowed: "
                             f"{', '.join(sorted(allowed))}")
        for name in self.study.models:
            if name not in allowed:
                raise ValueError(f"study.models: unknown model {name!r}; allowed: "
                                 f"{', '.join(sorted(allowed))}")
        for section, key in [("study", "variants"), ("study", "models"), ("study", "seeds"),
                             ("sweep", "models"), ("sweep", "seeds")]:
            values = getattr(getattr(self, section), key)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{section}.{key}: must be a non-empty list without repeats")
        for name in [*self.sweep.models, *self.train.per_model]:
            if name not in allowed:
                where = "sweep.models" if name in self.sweep.models else "train.per_model"
                raise ValueError(f"{where}: unknown model {name!r}; allowed: "
                                 f"{', '.join(sorted(allowed))}")
        variant = self.compose.variants.get(self.sweep.ratio_variant)
        if (variant is None or not variant.synthetic_parts() or variant.per_class is not None
                or variant.gate or variant.online_augment is not None):
            raise ValueError(f"sweep.ratio_variant: {self.sweep.ratio_variant!r} must be a "
                             f"variant under compose.variants with synthetic parts, a ratio, "
                             f"no gate and no online_augment")
        return self

    def run_name(self, variant: str, model: str, seed: int) -> Path:
        """The sub-path of one study cell under paths.models / train_metrics / evaluate_metrics
        (dvc.yaml spells the same layout)."""
        return Path(variant) / model / f"seed{seed}"

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


def _yaml_error(path: Path, e: yaml.YAMLError) -> SynthaugError:
    """One line, `file:line:col: not valid YAML: problem` (PyYAML's own text spans lines)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or str(e)
    return SynthaugError(f"{where}: not valid YAML: {' '.join(problem.split())}")


def load_params(path: Path | str = "params.yaml", overrides: list[str] | None = None) -> Params:
    path = Path(path)
    if not path.exists():
        raise SynthaugError(f"{path}: params file not found")
    if path.is_dir():
        raise SynthaugError(f"{path}: is a folder; --params takes a YAML file (e.g. params.yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SynthaugError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                            f"{e.start}); save it as UTF-8") from None
    except OSError as e:
        raise SynthaugError(f"{path}: cannot read the params file ({e.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from None
    if not isinstance(data, dict):
        raise SynthaugError(f"{path}: expected a mapping of sections at the top level")
    apply_overrides(data, overrides or [])
    return validate_params(data, str(path))
