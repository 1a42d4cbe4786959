"""A labelled synthetic set: drawn from a trained generator with a latent-space sampler, packed
with per-image provenance, and drawn as figures (`synthaug sample` does this for every set of
`sample.sets`; nothing here reads params.yaml).

`draw` takes the set's seed (`set_seed`: the sample seed and the set's name, so two sets of one
generator draw different images); `write` fills a folder the caller replaces atomically.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synthaug.generators.common import GeneratorModel, load_generator
from synthaug.generators.config import SetConfig
from synthaug.generators.samplers import Sampler, build_sampler
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.lineage import check_made_from
from synthaug.pipeline.data.storage import PackedDataset

INTERPOLATION_CLASSES = 3  # rows of interpolation.png


def set_seed(seed: int, name: str) -> int:
    """Each set's own seed: two sets of one generator draw different images."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


def load_for(folder: Path, name: str, cfg: SetConfig, train: PackedDataset,
             device: torch.device, train_dir: Path | str = "the train split"
             ) -> tuple[GeneratorModel, dict]:
    """The trained generator of set `name` (from `folder`), checked against the train split
    `train` (read from `train_dir`): its classes, shape and content hash."""
    if not (folder / "config.json").is_file():
        raise SynthaugError(f"{folder}: no trained {cfg.generator} generator for set {name!r}; "
                            f"run `synthaug train-generator {cfg.generator}` (or `dvc repro`)")
    model, gconfig = load_generator(folder, device)
    if model.class_names != train.class_names or tuple(model.shape) != train.shape:
        raise SynthaugError(f"{folder}: trained on classes/shape {model.class_names}/"
                            f"{model.shape}, but the train split has {train.class_names}/"
                            f"{train.shape}; retrain it (`dvc repro`)")
    trained_on = gconfig.get("trained_on")  # the train split it learnt, as it is now
    check_made_from(folder, trained_on.get("content_hash") if isinstance(trained_on, dict) else None,
                    train_dir, train.meta["content_hash"], f"`synthaug train-generator {cfg.generator}`")
    return model, gconfig


@dataclass
class Drawn:
    name: str
    cfg: SetConfig
    seed: int
    images: np.ndarray  # uint8 N x H x W x C
    labels: np.ndarray  # balanced, class-major
    provenance: list[dict]  # one manifest row per image
    sampler: Sampler  # fitted: the figures draw with it too (or a pretrained one's sampler)
    seconds: float


def draw(model: GeneratorModel, name: str, cfg: SetConfig, train: PackedDataset, seed: int,
         per_class: int, batch_size: int) -> Drawn:
    """`per_class` images of every class from `model` with the set's sampler (fitted on the
    train split, for samplers that start from real images)."""
    from synthaug.pipeline.data.compose import balanced_labels

    start = time.perf_counter()
    labels = balanced_labels(len(train.class_names), per_class)
    sampler = build_sampler(model, cfg).fit(train.images, train.labels)
    images, provenance = sampler.sample(labels, torch.Generator().manual_seed(seed), batch_size)
    provenance = [{**row, "set": name, "seed": seed} for row in provenance]
    return Drawn(name, cfg, seed, images, labels, provenance, sampler,
                 time.perf_counter() - start)


def write(folder: Path, d: Drawn, train: PackedDataset, gconfig: dict, walk_steps: int) -> None:
    """The packed set and grid.png, walk.png (how the sampler moves, one row per class) and
    interpolation.png (strips between two latents of a class) into `folder` (a pretrained
    pipeline's set: grid.png, and walk.png for img2img)."""
    from synthaug.generators.latents import interpolation
    from synthaug.pipeline.data.storage import write_dataset
    from synthaug.pipeline.figures.data import interpolation_strip, sample_grid

    cfg, names, model = d.cfg, train.class_names, getattr(d.sampler, "model", None)
    write_dataset(folder, d.images, d.labels, names, d.provenance, {
        "kind": "synthetic", "set": d.name, "generator": cfg.generator,
        "sampler": cfg.sampler, "settings": cfg.settings(), "seed": d.seed,
        "generator_trained_on": gconfig.get("trained_on"), "source": train.meta.get("source"),
        **({"pretrained": gconfig["pretrained"]} if "pretrained" in gconfig else {})})
    title = f"{d.name}: {cfg.generator}, {cfg.sampler} sampler" + "".join(
        f", {k} {v}" for k, v in cfg.settings().items())
    sample_grid(d.images, d.labels, names, folder / "grid.png", title=title)
    walk_rng = torch.Generator().manual_seed(d.seed)
    walk = d.sampler.walk(walk_rng, walk_steps)  # a pretrained text-to-image set: None
    if walk is not None:
        walks, walk_title = walk
        interpolation_strip(walks.reshape(len(names), walk_steps, *walks.shape[1:]), names,
                            folder / "walk.png", title=f"{d.name}: {walk_title}")
    if not isinstance(model, GeneratorModel):  # a pretrained pipeline: no latent strips
        return
    strips, rows = [], []
    for c in np.unique(d.labels)[:INTERPOLATION_CLASSES]:
        z = torch.randn((2, *model.latent_shape), generator=walk_rng)
        strips.append(interpolation(model, z[0], z[1], int(c), 2 * walk_steps, **d.sampler.options))
        rows.append(names[c])
    interpolation_strip(np.stack(strips), rows, folder / "interpolation.png",
                        title=f"{cfg.generator}: interpolation strips, z1 (left) to z2 (right)")
