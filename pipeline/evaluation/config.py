"""The `quality`, `sweep` and `study` sections: how synthetic sets are scored, the
accuracy-against-data sweeps and the study's variant x model x seed matrix."""
from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt

from pipeline.core.settings import Device, Section

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

