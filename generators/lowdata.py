"""Synthetic sets for a smaller real split: each generator family trained on that split alone
(no leak from the larger pool), then each set drawn from it, in memory. The sweep's `when`
points use it (pipeline.experiments.sweep takes the callable `synthesizer` returns).

Each family trains with its `train_generator` config, the step budget included: the same
number of updates whatever the split's size, as `synthaug train-generator` trains it.
Pretrain, then adapt (tag "pretrain": a variant with `unlabelled: pretrain`): each family first
learns its `pretrain.source` (unset: `pool`, the rest of the train pool beyond the split, which
the caller passes) without labels, then the split; the other when points train on the split
alone, whatever `pretrain.source` says.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from synthaug.generators.config import SetConfig, TrainGeneratorConfig
from synthaug.generators.pretrain_config import when_family
from synthaug.generators.pretrained_config import PRETRAINED, PretrainedConfig
from synthaug.pipeline.data.storage import PackedDataset


def train_family(family: str, cfg: TrainGeneratorConfig, train: PackedDataset, val: PackedDataset,
                 device: torch.device, pretrain: np.ndarray | None = None):
    """The EMA model of `family` trained on `train` for its budget (no checkpoints, no logs);
    `pretrain`: the unlabelled images its config's pretraining phase learns first."""
    from synthaug.generators.common import build_generator
    from synthaug.generators.training import GeneratorTrainer
    from synthaug.pipeline.core.device import seed_everything

    rng = seed_everything(cfg.seed, deterministic=device.type == "cpu")
    model = build_generator(family, cfg.family(family), train.shape, train.class_names)
    trainer = GeneratorTrainer(model, cfg, (train.images, train.labels), (val.images, val.labels),
                               device, rng, pretrain=pretrain)
    while not trainer.done:
        trainer.train_steps(trainer.total - trainer.step)
    return trainer.ema.eval()


def synthesizer(names: list[str], sets: dict[str, SetConfig], cfg: TrainGeneratorConfig,
                val: PackedDataset, per_class: int, batch_size: int, seed: int,
                device: torch.device, log: Callable[[str], None] = lambda line: None,
                pretrained: PretrainedConfig | None = None
                ) -> Callable[..., dict[str, PackedDataset]]:
    """(k, split, tag="", pool=None) -> {set name: packed set} for the sets `names`, cached per
    (k, tag): each family they need trained once on the split, each set drawn as `synthaug
    sample` draws it (tag "unlabelled": the split holds the pool's pseudo-labelled images too;
    "pretrain": pretrained first on `pool`, the rest of the train pool's images, or on the
    family's own pretrain.source)."""
    from synthaug.generators.pretrain import pretrain_images
    from synthaug.generators.sets import draw, set_seed

    cache: dict[tuple[int, str], dict[str, PackedDataset]] = {}
    pipeline = []  # `pretrained`'s pipeline, loaded by the first set that draws from it

    def make(k: int, split: PackedDataset, tag: str = "",
             pool: np.ndarray | None = None) -> dict[str, PackedDataset]:
        if (k, tag) not in cache:
            models, out = {}, {}
            for name in names:
                family = sets[name].generator
                if family == PRETRAINED:  # nothing to train: drawn from the split as it is
                    from synthaug.generators.pretrained import Pretrained

                    pipeline[:] = pipeline or [Pretrained(pretrained, device)]
                    d = pipeline[0].draw(name, sets[name], split, set_seed(seed, name),
                                         sets[name].per_class or per_class)
                    out[name] = PackedDataset(d.images, d.labels, list(split.class_names),
                                              {"kind": "synthetic", "k": k}, d.provenance)
                    continue
                if family not in models:
                    gcfg = cfg.model_copy(update={family: when_family(cfg.family(family), tag)})
                    source = gcfg.family(family).pretrain.source
                    images = pretrain_images(family, gcfg.family(family).pretrain, split.shape,
                                             lambda: pool)
                    n = 0 if images is None else len(images)
                    log(f"when k={k}: training {family} on {len(split)} images"
                        + {"unlabelled": " (pseudo-labelled pool included)",
                           "pretrain": f" after {n} unlabelled ones ({source})"}.get(tag, ""))
                    models[family] = train_family(family, gcfg, split, val, device, images)
                n = sets[name].per_class or per_class
                d = draw(models[family], name, sets[name], split, set_seed(seed, name), n,
                         batch_size)
                out[name] = PackedDataset(d.images, d.labels, list(split.class_names),
                                          {"kind": "synthetic", "k": k}, d.provenance)
            cache[k, tag] = out
        return cache[k, tag]

    return make
