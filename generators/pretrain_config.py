"""The family configs' `pretrain` section (torch-free, as generators.config, which holds it;
what it does is generators.pretrain's and generators.training's)."""
from __future__ import annotations

from pydantic import Field, PositiveInt, field_validator

from synthaug.pipeline.core.settings import Section


class PretrainConfig(Section):
    """Pretrain, then adapt: the generator first learns an unlabelled image source
    unconditionally (every image under the null label), then the labelled split
    class-conditionally for its usual `steps`."""

    source: str | None = Field(None, description=(
        "null: no pretraining; `pool`: the rest of the train pool (outside the split the "
        "generator adapts to, never val or test), without labels; `folder:PATH`: the images "
        "of another folder (one sub-folder per class; the classes are ignored), resized to "
        "the data set's size and channels"))
    steps: PositiveInt = Field(1000, description=(
        "unconditional optimiser steps on the source, before the adapt steps (latent "
        "diffusion: its autoencoder_steps also learn the source, before these)"))

    @field_validator("source")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is None or v == "pool" or (v.startswith("folder:") and len(v) > len("folder:")):
            return v
        raise ValueError(f"unknown pretraining source {v!r}; allowed: null, pool, folder:PATH")

    @property
    def active_steps(self) -> int:
        """The steps on the source (0: no pretraining, and no null label either)."""
        return self.steps if self.source else 0


def when_family(fcfg, tag: str = ""):
    """The family config `fcfg` as a when point trains it (generators.lowdata): on the split
    alone, whatever its pretrain.source says, or, for tag "pretrain", first on its
    pretrain.source (unset: `pool`, the rest of the train pool)."""
    source = (fcfg.pretrain.source or "pool") if tag == "pretrain" else None
    return fcfg.model_copy(update={"pretrain": fcfg.pretrain.model_copy(update={"source": source})})
