"""The one way every classifier of synthaug is trained: `Training` seeds, builds the model and
its on-the-fly augmentation, and fits it with the loop of `training.py`. The study's cells
(`cell.Cell`), the sweep and "when" points, the judge, CAS and `synthaug.train` all use it."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
from torch import nn

from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.classifiers.training import FitResult, fit
from synthaug.pipeline.classifiers.use import Use
from synthaug.pipeline.core.distributed import SINGLE, Dist


def fit_variant(model: nn.Module, train: tuple[np.ndarray, np.ndarray], val, cfg: TrainConfig,
                device: torch.device, generator: torch.Generator, use: Use | None = None,
                **kw) -> FitResult:
    """`fit` with a variant's recipe of use; `pretrain_finetune` fits on the whole variant,
    then fine-tunes the best model on its real images alone (fresh optimiser and schedule,
    lr x finetune_lr_mult) and keeps the fine-tuning phase's best epoch."""
    epochs = cfg.epochs if use is None else use.epochs(cfg.epochs)  # fixmatch.epochs
    first = fit(model, train, val, cfg.model_copy(update={"epochs": epochs}), device, generator,
                use=use, **kw)
    if use is None or use.schedule != "pretrain_finetune":
        return first
    tune = cfg.model_copy(update={"epochs": use.finetune_epochs, "lr": cfg.lr * use.finetune_lr_mult})
    real = dataclasses.replace(use, synthetic_weight=1.0, replace_p=0.0, draw=use.real_only())
    on_epoch = kw.pop("on_epoch", None)
    shift = lambda row: {**row, "epoch": row["epoch"] + first.epochs_run, "phase": "finetune"}
    second = fit(model, train, val, tune, device, generator, use=real, **kw,
                 on_epoch=None if on_epoch is None else lambda row: on_epoch(shift(row)))
    return dataclasses.replace(second, best_epoch=second.best_epoch + first.epochs_run,
                               epochs_run=first.epochs_run + second.epochs_run,
                               seconds=first.seconds + second.seconds,
                               history=first.history + [shift(r) for r in second.history])


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
