"""The `sweep` and `study` sections: the accuracy-against-data sweeps and the study's
variant x model x seed matrix."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from synthaug.pipeline.core.settings import Seed, Section

class SweepConfig(Section):
    """`synthaug sweep`: accuracy against the amount of data, every model in one dvc stage.

    real_per_class: real-only training sets of k images per class, drawn from the full train
    pool exactly as `prepare.train_per_class` draws (nested: the k=5 set lies inside k=10).
    ratios: `ratio_variant` re-composed with this many synthetic images per real one. The
    study's own cells fill in k = prepare.train_per_class and ratios 0 (real) and the
    variant's own ratio, so those need no cell here.
    """

    models: list[str] = Field(default=["cnn", "efficientnet_lite0"], description=(
        "the sweep's models, all in one queue of the sweep stage's workers"))
    real_per_class: list[PositiveInt] = Field(default=[5, 10, 20, 100], description=(
        "real-only training sets of k images per class (nested draws; the study adds "
        "prepare.train_per_class)"))
    ratio_variant: str = Field("real+diffusion", description=(
        "the variant re-composed at each ratio (synthetic parts, a ratio, no gate, no "
        "online_augment)"))
    ratios: list[PositiveFloat] = Field(default=[2.0], description=(
        "synthetic images per real one (the study adds 0 and the variant's own ratio)"))
    seeds: list[Seed] = Field(default=[0, 1, 2], description="seeds of every sweep point")
    low_data_k: PositiveInt = Field(10, description=(
        "points at this many real images per class or fewer use low_data_seeds (small sets "
        "are noisy)"))
    low_data_seeds: list[Seed] = Field(default=[0, 1, 2, 3, 4], description=(
        "seeds of the points at k <= low_data_k"))
    when_per_class: list[PositiveInt] = Field(default=[5, 10, 20], description=(
        "the 'when' figure's k (the study adds prepare.train_per_class): each of "
        "when_variants re-composed on that k's own nested split, its synthetic sets drawn "
        "from generators trained on that split alone; each k must be in real_per_class"))
    when_variants: list[str] = Field(default=["real+classic", "real+vae-jitter", "more-real"],
                                     description=(
        "the variants of the 'when' figure (real-only comes from real_per_class)"))
    when_models: list[str] = Field(default=["cnn"], description=(
        "the sweep models that run the 'when' points (each trains a generator per k and "
        "synthetic family)"))
    workers: NonNegativeInt = Field(0, description=(
        "processes that share the sweep's points on a CPU, the cores split among them as "
        "threads; 0: one per core on a CPU (at most 4), all in the sweep's own process on a "
        "GPU; 1: always in its own process"))


class StudyConfig(Section):
    """The comparison matrix: every variant x model x seed is one train + evaluate cell."""

    variants: list[str] = Field(default=["real", "real+classic", "real+gan", "real+vae",
                                         "real+diffusion", "real+vae-jitter", "real+all",
                                         "synthetic-only", "more-real"],
                                description="names under compose.variants the study trains on")
    models: list[str] = Field(default=["cnn", "efficientnet_lite0"],
                              description="the study's classifiers")
    seeds: list[Seed] = Field(default=[0, 1, 2], description=(
        "seeds of every cell (the train stage trains every cell in one command)"))
    workers: NonNegativeInt = Field(0, description=(
        "processes that train the cells side by side on a CPU, one thread each; 0: one "
        "per core (at most 4), 1: one after the other in the command's process (a GPU always)"))
    protocol: Literal["auto", "holdout", "kfold"] = Field("auto", description=(
        "how the study is tested: holdout (the prepared test split), kfold (repeated "
        "stratified k-fold over every labelled image: the crossval stage), or auto: k-fold "
        "when the test split holds fewer than 30 images of some class, else holdout"))
    folds: int = Field(5, ge=2, le=20, description=(
        "k-fold: folds per repeat (each labelled image is tested once per repeat)"))
    repeats: PositiveInt = Field(1, description=(
        "k-fold: repeats, each a fresh stratified partition (cost: folds x repeats units)"))

