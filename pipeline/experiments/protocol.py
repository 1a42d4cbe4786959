"""The protocol of a study: the rule that picks a single holdout or repeated stratified k-fold
cross-validation (`choose`), and the k-fold design's pure parts: the partition of the labelled
images into folds per repeat, each unit's (train pool, val, test) split, its seed. Light (numpy;
scikit-learn inside the functions), so `synthaug check` plans with it before any work; the
crossval stage's training is pipeline.experiments.crossval's.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from synthaug.pipeline.core.errors import SynthaugError

MIN_TEST_PER_CLASS = 30  # holdout needs this many test images in every class, else k-fold


def choose(setting: str, test_counts: np.ndarray) -> tuple[str, str]:
    """("kfold" | "holdout", the rule's reason in one line) for `study.protocol` = `setting`
    and the prepared test split's images per class."""
    if setting != "auto":
        return setting, f"study.protocol: {setting} as set"
    least = int(np.min(test_counts)) if len(test_counts) else 0
    if least >= MIN_TEST_PER_CLASS:
        return "holdout", (f"study.protocol auto chose holdout: the test split holds at least "
                           f"{least} images of every class (k-fold below {MIN_TEST_PER_CLASS})")
    return "kfold", (f"study.protocol auto chose k-fold: a held-out test split would hold only "
                     f"{least} image(s) of its smallest class (holdout needs "
                     f"{MIN_TEST_PER_CLASS}), too few to decide a difference of a few points")


def partition(labels: np.ndarray, folds: int, repeats: int, seed: int) -> np.ndarray:
    """repeats x N fold ids: each row a stratified, seeded partition of the images into
    `folds` folds (seed + r for repeat r)."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels)
    if counts.size and (least := int(counts[counts > 0].min())) < folds:
        raise SynthaugError(f"study.folds: {folds} stratified folds need at least {folds} "
                            f"labelled images in every class, but one class has {least}; set "
                            f"study.folds to {max(2, least)} or less"
                            + ("" if least >= 2 else " (or add images to that class)"))
    out = np.full((repeats, len(labels)), -1, np.int64)
    for r in range(repeats):
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + r)
        for f, (_, test) in enumerate(skf.split(np.zeros(len(labels)), labels)):
            out[r, test] = f
    return out


def fold_split(labels: np.ndarray, fold_of: np.ndarray, fold: int, val_fraction: float,
               seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train pool, val, test) indices of one unit: test = the fold, val = `val_fraction` of
    all images (at least one per class) drawn stratified from the other folds, the train
    pool the rest."""
    from sklearn.model_selection import train_test_split

    test = np.flatnonzero(fold_of == fold)
    rest = np.flatnonzero(fold_of != fold)
    n_val = max(len(np.unique(labels)), int(round(val_fraction * len(labels))))
    pool, val = train_test_split(rest, test_size=n_val, stratify=labels[rest],
                                 random_state=seed + fold)
    return np.sort(pool), np.sort(val), test


@dataclasses.dataclass(frozen=True)
class Unit:
    repeat: int
    fold: int

    @property
    def name(self) -> str:
        return f"r{self.repeat}f{self.fold}"


def units(folds: int, repeats: int) -> list[Unit]:
    return [Unit(r, f) for r in range(repeats) for f in range(folds)]


def unit_seed(unit: Unit, folds: int) -> int:
    """Each unit's classifier seed and k-per-class draw: its index."""
    return unit.repeat * folds + unit.fold
