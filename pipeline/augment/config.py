"""The `augment` section (offline classic copies) and the online augmentation specs that
training uses: albumentations presets/steps (CPU, per epoch) and batched on-device ops
(`BatchAugmentConfig`, pipeline/augment/batch.py)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError, WrapValidator, model_validator

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.core.settings import Seed, Section, format_error

AUGMENT_PRESETS = ("light", "medium", "heavy", "randaugment", "trivialaugment", "autoaugment",
                   "augmix")
AUTO = "auto"  # augment.pipeline: chosen on the val split (pipeline/experiments/classic_choice.py)
NO_AUGMENT = "none"  # a candidate of the choice: no augmentation (the copies are the originals)
CHOICE_RECORD = "choice.json"  # auto: the choice and every candidate's val scores, in paths.augmented
# colour-free candidates first: a tie goes to the earlier one, so a preset must beat none
DEFAULT_CANDIDATES = [NO_AUGMENT, "light", "medium", "heavy", "randaugment", "trivialaugment"]


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
# augment.pipeline: a spec, or `auto` (chosen on the val split among augment.candidates)
PipelineSpec = Annotated[str | list[dict[str, Any]],
                         AfterValidator(lambda v: v if v == AUTO else _check_spec(v))]


def _check_candidate(v: str) -> str:
    if v != NO_AUGMENT and v not in AUGMENT_PRESETS:
        raise ValueError(f"unknown candidate {v!r}; allowed: {NO_AUGMENT}, "
                         f"{', '.join(AUGMENT_PRESETS)}")
    return v


Candidates = Annotated[list[Annotated[str, AfterValidator(_check_candidate)]],
                       Field(min_length=1)]


class AugmentConfig(Section):
    """Offline classic augmentation of the train split (`synthaug augment`)."""

    pipeline: PipelineSpec = Field(AUTO, description=(
        "auto (the candidate with the best val accuracy, see candidates), a preset (light, "
        "medium, heavy, randaugment, trivialaugment, autoaugment, augmix) or a list of "
        "albumentations steps `{transform: Name, **args}`"))
    candidates: Candidates = Field(default_factory=lambda: list(DEFAULT_CANDIDATES),
                                   description=(
        "auto: the presets tried (and none: no augmentation); a tie goes to the earlier one"))
    choose_model: str = Field("cnn", description=(
        "auto: the classifier trained per candidate (the study's recipe for it)"))
    choose_seeds: Annotated[list[Seed], Field(min_length=1)] = Field([0], description=(
        "auto: seeds of each candidate's fit; the mean val accuracy decides"))
    copies_per_image: PositiveInt = Field(4, description="augmented copies of every training image")
    seed: Seed = Field(0, description="seed of the copies (each chunk of 32 images has its own)")
    workers: NonNegativeInt = Field(0, description=(
        "processes; 0 = all cores (the output is identical for any number); auto's fits: "
        "0 = one per core, at most 4"))

    @model_validator(mode="after")
    def _unique(self):
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"candidates: {self.candidates} names a candidate twice")
        if len(set(self.choose_seeds)) != len(self.choose_seeds):
            raise ValueError(f"choose_seeds: {self.choose_seeds} names a seed twice")
        return self


Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class BatchAugmentConfig(Section):
    """Per-image random ops on whole float batches, on the training device. Each op runs on an
    image with its own probability; the defaults are the identity (every p = 0).

    rotate / shear: degrees, drawn in [-x, x]; translate: fraction of the size, in [-x, x];
    scale: (min, max) zoom; erase_scale: (min, max) fraction of the area of one erased
    rectangle (set to 0, the background); noise_sigma: Gaussian noise std on the [0, 1] scale;
    brightness / contrast: factors drawn in [1 - x, 1 + x] (torchvision ColorJitter's meaning).
    """

    rotate: float = Field(0.0, ge=0.0, le=180.0, description="rotation in degrees, drawn in [-x, x]")
    translate: float = Field(0.0, ge=0.0, le=0.5, description=(
        "shift as a fraction of the size, drawn in [-x, x]"))
    scale: tuple[PositiveFloat, PositiveFloat] = Field((1.0, 1.0), description="(min, max) zoom")
    shear: float = Field(0.0, ge=0.0, lt=60.0, description="shear in degrees, drawn in [-x, x]")
    p_affine: Probability = Field(0.0, description="per-image probability of the affine op")
    erase_p: Probability = Field(0.0, description="per-image probability of erasing a rectangle")
    erase_scale: tuple[Probability, Probability] = Field((0.02, 0.1), description=(
        "(min, max) fraction of the area of the erased rectangle (set to 0, the background)"))
    noise_p: Probability = Field(0.0, description="per-image probability of Gaussian noise")
    noise_sigma: float = Field(0.05, ge=0.0, le=1.0, description=(
        "Gaussian noise std on the [0, 1] scale"))
    jitter_p: Probability = Field(0.0, description=(
        "per-image probability of the brightness/contrast jitter"))
    brightness: float = Field(0.0, ge=0.0, le=1.0, description=(
        "brightness factor drawn in [1 - x, 1 + x] (torchvision ColorJitter's meaning)"))
    contrast: float = Field(0.0, ge=0.0, le=1.0, description=(
        "contrast factor drawn in [1 - x, 1 + x]"))

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
            raise ValueError(format_error(e)) from None
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

