"""Usefulness of a synthetic set, through classifiers: what the judge (the quality recipe
trained on the real train split) says of each image, and what a classifier trained on the set
alone scores on real images.

- `cas`: Classification Accuracy Score (Ravuri & Vinyals 2019): the recipe trained on the set
  alone, tested on the real test split, with per-class recall;
- `judge_agreement`: how often the judge predicts each image's label, and with what confidence;
- `gate`: the per-image filter that compose applies to gated synthetic parts (judge confidence
  of the image's own label >= tau, and not a near-copy of a training image).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.classifiers.trainer import train_classifier
from synthaug.pipeline.classifiers.training import predict


def probabilities(model: nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Softmax probabilities (float64 N x classes) for uint8 N x H x W x C images."""
    return torch.softmax(predict(model, images, device).double(), dim=1).numpy()


def per_class_recall(pred: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """class name -> fraction of its images predicted as it (None: no image of that class)."""
    out = {}
    for c, name in enumerate(class_names):
        mask = labels == c
        out[name] = float((pred[mask] == c).mean()) if mask.any() else None
    return out


def test_accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                  device: torch.device) -> float:
    return float((predict(model, images, device).argmax(1).numpy() == np.asarray(labels)).mean())


def cas(images: np.ndarray, labels: np.ndarray, test: tuple[np.ndarray, np.ndarray],
        select: tuple[np.ndarray, np.ndarray], class_names: list[str], recipe: TrainConfig,
        custom_models: dict, device: torch.device) -> dict:
    """Classification Accuracy Score: the recipe trained on this set alone (model selection on
    `select`, the real val split), tested on the real `test` split.
    Returns accuracy and per-class recall."""
    model, _, _ = train_classifier(images, labels, select, class_names, recipe, custom_models,
                                   device)
    pred = predict(model, test[0], device).argmax(1).numpy()
    y = np.asarray(test[1])
    return {"accuracy": float((pred == y).mean()),
            "per_class": per_class_recall(pred, y, class_names)}


def judge_agreement(judge: nn.Module, images: np.ndarray, labels: np.ndarray,
                    device: torch.device, class_names: list[str] | None = None) -> dict:
    """How often the judge predicts each image's label (overall and per class), and the mean
    probability it gives that label."""
    p = probabilities(judge, images, device)
    y = np.asarray(labels)
    names = class_names or [str(c) for c in range(p.shape[1])]
    return {"accuracy": float((p.argmax(1) == y).mean()),
            "per_class": per_class_recall(p.argmax(1), y, names),
            "mean_confidence": float(p[np.arange(len(y)), y].mean())}


def gate(images: np.ndarray, labels: np.ndarray, judge: nn.Module, device: torch.device,
         tau: float, near_copy_mask: np.ndarray | None = None,
         class_names: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """Keep images whose judge probability of their own label is >= tau and that are not
    near-copies. Returns (keep mask, per class {kept, low_confidence, near_copy}); each image
    is counted once, a near-copy as near_copy whatever its confidence."""
    y = np.asarray(labels)
    p = probabilities(judge, images, device)
    names = class_names or [str(c) for c in range(p.shape[1])]
    copy = np.zeros(len(y), bool) if near_copy_mask is None else np.asarray(near_copy_mask, bool)
    confident = p[np.arange(len(y)), y] >= tau
    keep = confident & ~copy
    counts = {name: {"kept": int((keep & (y == c)).sum()),
                     "low_confidence": int((~confident & ~copy & (y == c)).sum()),
                     "near_copy": int((copy & (y == c)).sum())}
              for c, name in enumerate(names)}
    return keep, counts
