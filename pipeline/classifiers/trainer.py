"""The one way every classifier of synthaug is trained: `Training` seeds, builds the model and
its on-the-fly augmentation, and fits it with the loop of `training.py`. The study's cells
(`cell.Cell`), the sweep and "when" points, the judge, CAS and `synthaug.train` all use it."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.classifiers.training import FitResult, fit_variant
from synthaug.pipeline.classifiers.use import Use
from synthaug.pipeline.core.distributed import SINGLE, Dist


class Training:
    """One classifier about to train: the one way every classifier of synthaug is trained (the
    study's cells, sweep and "when" points, the judge, CAS and `synthaug.train`), with one
    seeding policy. Building it seeds python, numpy and torch with `recipe.seed` (CPU kernels
    deterministic; a GPU keeps its fast kernels), then builds `recipe.model` for the images
    (its initial weights come from that seed) and the on-the-fly augmentation.

    `use`: a variant's recipe of use; `online`: its on-the-fly augmentation (else the
    recipe's). `fit` trains it with model selection on `select` (the real val split).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                 recipe: TrainConfig, custom_models: dict, device: torch.device,
                 use: Use | None = None, online=None):
        from synthaug.pipeline.classifiers.classifier import build_classifier
        from synthaug.pipeline.core.device import seed_everything

        self.images, self.labels, self.recipe, self.device, self.use = \
            images, labels, recipe, device, use
        self.generator = seed_everything(recipe.seed, deterministic=device.type == "cpu")
        _, h, w, c = images.shape
        self.model, self.architecture = build_classifier(recipe.model, custom_models, (c, h, w),
                                                         class_names, images, recipe)
        self.online = online or recipe.online_augment
        self.augment = None
        if self.online is not None:
            from synthaug.pipeline.augment.expand import OnlineAugment

            self.augment = OnlineAugment(images, labels, self.online, recipe.seed, recipe.workers)

    def fit(self, select: tuple[np.ndarray, np.ndarray], progress: bool = False,
            on_epoch: Callable[[dict], None] | None = None, dist: Dist = SINGLE) -> FitResult:
        """Train (`fit_variant`); the model ends with its best epoch's state, in eval mode."""
        result = fit_variant(self.model, (self.images, self.labels), select, self.recipe,
                             self.device, self.generator, self.use, progress=progress,
                             augment=self.augment, on_epoch=on_epoch, dist=dist)
        self.model.eval()
        return result


def train_classifier(images: np.ndarray, labels: np.ndarray,
                     select: tuple[np.ndarray, np.ndarray], class_names: list[str],
                     recipe: TrainConfig, custom_models: dict, device: torch.device,
                     progress: bool = False, use: Use | None = None, online=None
                     ) -> tuple[nn.Module, dict, FitResult]:
    """`Training(...).fit(select)` in one call: (the model with its best state, in eval mode;
    its architecture record for `save_classifier`; the fit)."""
    run = Training(images, labels, class_names, recipe, custom_models, device, use, online)
    result = run.fit(select, progress)
    return run.model, run.architecture, result
