"""The `quality` section: how synthetic sets are scored, and the reference sets every table
shows beside them."""
from __future__ import annotations

from pydantic import Field, NonNegativeInt, PositiveInt

from synthaug.pipeline.core.settings import Device, Seed, Section

# The reference rows of the quality table: a held-out real split (what a perfect generator
# would score) and noise (what a broken one would); every other set is synthetic.
REFERENCES = ("real-val", "noise")


class QualityConfig(Section):
    """`synthaug judge` and `synthaug quality`: how synthetic sets are scored.

    The judge is a classifier trained on the real train split with this recipe (TrainConfig's
    defaults, with `model`, `epochs` and `seed` from here; not the `train` section, so that
    tuning it leaves the quality scores valid); its penultimate layer is the
    domain feature space of FID-domain, KID and precision/recall/density/coverage, and its
    confidence drives the quality gate. CAS trains the same recipe on each synthetic set alone
    and tests it on the real test split.
    """

    model: str = Field("cnn", description="the judge's (and CAS's) model")
    epochs: PositiveInt = Field(4, description="the judge's (and CAS's) epochs")
    seed: Seed = Field(0, description="the judge's (and CAS's) seed")
    device: Device = Field("auto", description=(
        "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"))
    k: PositiveInt = Field(5, description=(
        "nearest neighbours for precision / recall / density / coverage"))
    outlier_radii: float = Field(0.5, ge=0.0, lt=1.0, description=(
        "precision leaves out the balls of this share of real images with the largest k-NN "
        "radii (wide balls hold noise too); 0.5 as Kynkaanniemi et al. 2019's realism score"))
    kid_subset_size: PositiveInt = Field(100, description="subset size of the KID estimate")
    copy_threshold: float = Field(0.5, gt=0.0, le=1.0, description=(
        "near-copy: distance to the nearest training image < this x that training image's "
        "distance to its own nearest neighbour"))
    imagenet_features: bool = Field(True, description=(
        "also FID in EfficientNet-Lite0's ImageNet features (the package's weights, offline)"))
    cas: bool = Field(True, description=(
        "Classification Accuracy Score: train a classifier per set (the slowest metric)"))
    workers: NonNegativeInt = Field(0, description=(
        "processes scoring the sets side by side on a CPU, one thread each: 0 = one per core "
        "(at most 4); 1 = one after another"))
