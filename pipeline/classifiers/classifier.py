"""The classifier wrapper: input normalisation inside the model, so every data set feeds it.

It takes float images in [0, 1], N x C x H x W, and returns logits. Its folder holds the layer
list, input shape, class names and normalisation: `load_classifier` rebuilds it without
params.yaml.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.core.checkpoint import load_folder, save_folder
from pipeline.core.errors import SynthaugError


class Classifier(nn.Module):
    def __init__(self, net: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def make_classifier(layers: list, shape: tuple[int, int, int], num_classes: int,
                    mean: list[float], std: list[float]) -> Classifier:
    from pipeline.classifiers.layers import build_model

    return Classifier(build_model(layers, shape, num_classes), mean, std)


def build_classifier(name: str, custom: dict[str, list], shape: tuple[int, int, int],
                     class_names: list[str], images, cfg=None) -> tuple[nn.Module, dict]:
    """A fresh classifier `name` for `shape` images and its architecture record.

    The record (model, layers, shape, class_names) goes into the saved config.json, so that
    `load_classifier` can rebuild the model without params.yaml. Transfer models (ImageNet
    weights) take their settings from `cfg` (a TrainConfig) and record them under "transfer".
    """
    from pipeline.classifiers.config import TRANSFER_MODELS, TrainConfig

    if name in TRANSFER_MODELS and name not in custom:
        from pipeline.classifiers.transfer import build_transfer

        cfg = cfg or TrainConfig()
        if shape[0] not in (1, 3):
            raise SynthaugError(f"{name}: needs 1- or 3-channel images (got {shape[0]})")
        model, source = build_transfer(name, len(class_names), weights=cfg.weights,
                                       download=cfg.download_weights, strategy=cfg.strategy,
                                       input_size=cfg.input_size,
                                       backbone_lr_mult=cfg.backbone_lr_mult,
                                       unfreeze_every=cfg.unfreeze_every,
                                       freeze_bn=cfg.freeze_bn)
        return model, {"model": name, "layers": [], "shape": list(shape),
                       "class_names": list(class_names),
                       "transfer": {**model.settings(), "pretrained": source}}

    from pipeline.classifiers.layers import resolve_layers

    layers = resolve_layers(name, custom, shape)
    model = make_classifier(layers, shape, len(class_names), *channel_stats(images))
    return model, {"model": name, "layers": [layer.model_dump(mode="json") for layer in layers],
                   "shape": list(shape), "class_names": list(class_names)}


def channel_stats(images, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean/std (unbiased) of uint8 N x H x W x C images, in [0, 1] units. A set of
    more than `chunk` images (maybe memory-mapped) is read chunk by chunk, never whole."""
    if len(images) <= chunk:  # one float32 pass (what every model trained so far used)
        x = torch.from_numpy(np.array(images)).float().div_(255)
        return x.mean(dim=(0, 1, 2)).tolist(), x.std(dim=(0, 1, 2)).clamp_min(1e-3).tolist()
    c = images.shape[-1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(images), chunk):
        x = torch.from_numpy(np.array(images[i:i + chunk])).reshape(-1, c).double().div_(255)
        total += x.sum(0)
        squares += (x * x).sum(0)
    n = len(images) * images.shape[1] * images.shape[2]
    mean = total / n
    var = (squares - n * mean * mean).clamp_min(0) / (n - 1)
    return mean.tolist(), var.sqrt().clamp_min(1e-3).tolist()


def save_classifier(folder: Path, model: Classifier, config: dict) -> None:
    """`config` must hold: model, layers (list of dicts), shape, class_names."""
    config = {"kind": "classifier", **config,
              "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()}
    save_folder(folder, config, model.state_dict())


def load_classifier(folder: Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    from pydantic import TypeAdapter

    from pipeline.classifiers.architectures import Layer

    config, weights = load_folder(folder)
    if "transfer" in config:  # the saved weights replace everything: no ImageNet file needed
        from pipeline.classifiers.transfer import build_transfer

        settings = {k: v for k, v in config["transfer"].items() if k != "pretrained"}
        model, _ = build_transfer(config["model"], len(config["class_names"]), pretrained=False,
                                  **settings)
        model.load_state_dict(weights, strict=True)
        return model.to(device).eval(), config
    layers = TypeAdapter(list[Layer]).validate_python(config["layers"])
    model = make_classifier(layers, tuple(config["shape"]), len(config["class_names"]),
                            config["mean"], config["std"])
    model.load_state_dict(weights, strict=True)
    return model.to(device).eval(), config
