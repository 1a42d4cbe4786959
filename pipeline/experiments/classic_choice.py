"""The classic augmentation chosen for the data on the validation split (`augment.pipeline:
auto`), so that synthetic data competes against the best classic augmentation for this data,
not against whichever preset happens to be configured.

Every candidate of `augment.candidates` (built-in presets and policies, and `none`: no
augmentation) makes the augment stage's copies of the train split (`augment.copies_per_image`,
`augment.seed`, exactly as the stage would write them); the study's quick classifier
(`augment.choose_model`, trained with the study's recipe for it, `classifiers.config.recipe`,
through the one training path `classifiers.trainer.train_classifier`) trains on the real
images plus those copies, as the `real+classic` variant does, once per seed of
`augment.choose_seeds`, and is scored on the VAL split only: its best epoch's val accuracy
(the test split is never read). The candidate with the highest mean val accuracy is chosen;
ties go to the earlier-listed candidate (`none` first by default: a preset must beat no
augmentation to be chosen). A colour-sensitive task can thereby avoid colour jitter: the
3-channel `medium` and `heavy` presets jitter colour, and the torchvision policies change
colour, but `none` and `light` never do.

`none`'s "copies" are the originals themselves: real+classic then trains on exactly real's
distribution (each fit draws `epoch_size` samples uniformly from its set).

The candidates' fits run over the one worker pool (pipeline.core.pool), one job per
candidate and seed.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from synthaug.pipeline.augment.config import AUTO, CHOICE_RECORD, NO_AUGMENT, AugmentConfig
from synthaug.pipeline.augment.expand import Expansion, expand
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.storage import PackedDataset

RECORD = CHOICE_RECORD  # in paths.augmented: the choice and every candidate's val scores


def classic_copies(images: np.ndarray, labels: np.ndarray, spec: str | list, copies: int,
                   seed: int, workers: int = 1, progress: bool = False) -> Expansion:
    """`copies` classic copies of every image with `spec` (`expand`), or for `none` the
    originals themselves (seed 0), in the same parent-major order."""
    if spec == AUTO:  # a caller's slip, not the user's: auto names no pipeline by itself
        raise SynthaugError("augment.pipeline: auto must be resolved first (classic_choice."
                            "chosen_pipeline reads the augment stage's choice; choose makes one)")
    if spec != NO_AUGMENT:
        return expand(images, labels, spec, copies, seed, workers=workers, progress=progress)
    n = len(images)
    return Expansion(np.repeat(np.asarray(images), copies, axis=0),
                     np.repeat(np.asarray(labels), copies), np.repeat(np.arange(n), copies),
                     np.tile(np.arange(copies), n), np.zeros(n * copies, dtype=np.int64))


@dataclass
class Candidate:
    name: str
    val_accuracy: list[float]  # one per seed of augment.choose_seeds, in that order
    mean: float


@dataclass
class Choice:
    chosen: str
    model: str
    seeds: list[int]
    val_images: int
    candidates: list[Candidate]

    def record(self) -> dict:
        return {"chosen": self.chosen, "model": self.model, "seeds": self.seeds,
                "split": "val", "val_images": self.val_images,
                "candidates": [asdict(c) for c in self.candidates]}


def _state(train: PackedDataset, val: PackedDataset, augment: AugmentConfig, train_cfg,
           custom_models: dict, device: str) -> dict:
    """A worker's state (pipeline.core.pool)."""
    import torch

    return dict(train=train, val=val, augment=augment, train_cfg=train_cfg,
                custom_models=custom_models, device=torch.device(device))


def _score(state: dict, item: tuple[str, int]) -> tuple[float, float]:
    """(val accuracy of the quick classifier on real + `name`'s copies at `seed`, seconds)."""
    import time

    from synthaug.pipeline.classifiers.config import recipe
    from synthaug.pipeline.classifiers.trainer import train_classifier

    name, seed = item
    start = time.perf_counter()
    train, val, cfg = state["train"], state["val"], state["augment"]
    ex = classic_copies(train.images, train.labels, name, cfg.copies_per_image, cfg.seed)
    images = np.concatenate([train.images, ex.images])
    labels = np.concatenate([train.labels, ex.labels])
    _, _, fit = train_classifier(images, labels, (val.images, val.labels), train.class_names,
                                 recipe(state["train_cfg"], cfg.choose_model, seed),
                                 state["custom_models"], state["device"])
    return float(fit.best_val_accuracy), time.perf_counter() - start


def choose(train: PackedDataset, val: PackedDataset, augment: AugmentConfig, train_cfg,
           custom_models: dict, device, workers: int = 0, log=None) -> Choice:
    """Score every candidate of `augment.candidates` on `val` (see the module's docstring) and
    choose one. `train_cfg`: the train section (the study's recipe); `device` a torch device;
    `workers` processes (0: pipeline.core.pool.plan's choice for this device)."""
    from synthaug.pipeline.core.pool import imap, plan

    if len(val) == 0:
        raise SynthaugError("augment.pipeline: auto chooses on the val split, which is empty; "
                            "set prepare.val_fraction above 0 or name a preset")
    names, seeds = list(augment.candidates), list(augment.choose_seeds)
    items = [(n, s) for n in names for s in seeds]
    procs, threads = plan(len(items), device.type, workers)
    scores: dict[tuple[str, int], tuple[float, float]] = {}
    for i, result in imap(_state, (train, val, augment, train_cfg, custom_models, str(device)),
                          _score, items, procs, threads,
                          describe=lambda it: f"augment candidate {it[0]} (seed {it[1]})"):
        scores[items[i]] = result
        if log:
            log(f"augment: candidate {items[i][0]} seed {items[i][1]}: val accuracy "
                f"{result[0]:.4f} ({result[1]:.1f} s)")
    cands = []
    for n in names:
        accs = [scores[(n, s)][0] for s in seeds]
        cands.append(Candidate(n, accs, float(np.mean(accs))))  # no timings: the record
        # is the stage's output, the same on every run (the log has the seconds)
    best = max(cands, key=lambda c: c.mean)  # max keeps the first of equal means
    return Choice(best.name, augment.choose_model, seeds, len(val), cands)


def online_spec(online: str | list | None, pipeline: str | list) -> str | list | None:
    """A variant's `online_augment` with `auto` replaced by the study's classic pipeline
    (`pipeline`, resolved by chosen_pipeline; `none`: no online augmentation)."""
    if online != AUTO:
        return online
    if pipeline == AUTO:
        raise SynthaugError("online_augment: auto needs augment.pipeline resolved first "
                            "(classic_choice.chosen_pipeline)")
    return None if pipeline == NO_AUGMENT else pipeline


def resolved(augment: AugmentConfig, variants, folder: Path) -> AugmentConfig:
    """`augment` with `pipeline: auto` replaced by the augment stage's choice (read from
    `folder`, paths.augmented) where one of `variants` (VariantConfigs) needs it: a `classic`
    part or `online_augment: auto`; else `augment` as it is (no augment output needed)."""
    if augment.pipeline != AUTO or not any("classic" in v.parts or v.online_augment == AUTO
                                           for v in variants):
        return augment
    return augment.model_copy(update={"pipeline": chosen_pipeline(augment, folder)})


def chosen_pipeline(augment: AugmentConfig, folder: Path) -> str | list:
    """The pipeline the study's classic augmentation uses: `augment.pipeline` when it names
    one, else (auto) the one `synthaug augment` chose, read from `folder` (paths.augmented:
    its meta.json, which every run of the stage writes; the sweep's when points and
    `online_augment: auto` re-use the choice, they never choose again)."""
    if augment.pipeline != AUTO:
        return augment.pipeline
    meta = Path(folder) / "meta.json"
    try:
        made = json.loads(meta.read_text())["augment"]
    except (OSError, ValueError, KeyError, TypeError):
        made = {}
    made = made if isinstance(made, dict) else {}
    if not isinstance(made.get("choice"), dict):
        spec = made.get("spec")
        raise SynthaugError(
            f"{meta}: augment.pipeline is auto but no choice is recorded; run `synthaug "
            "augment` (or `dvc repro`) first" if not spec else
            f"{meta}: augment.pipeline is auto but these copies were made with "
            f"{spec if isinstance(spec, str) else 'a step list'}; rerun `synthaug augment` "
            "with these params, or give this command the same augment.pipeline")
    return made["choice"]["chosen"]
