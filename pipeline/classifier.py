"""The classifier wrapper: input normalisation inside the model, so every data set feeds it.

It takes float images in [0, 1], N x C x H x W, and returns logits. Its folder holds the layer
list, input shape, class names and normalisation: `load_classifier` rebuilds it without
params.yaml.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.checkpoint import load_folder, save_folder


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
    from pipeline.models import build_model

    return Classifier(build_model(layers, shape, num_classes), mean, std)


def channel_stats(images) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of uint8 N x H x W x C images, in [0, 1] units."""
    x = torch.as_tensor(images).float().div_(255)
    dims = (0, 1, 2)
    std = x.std(dim=dims).clamp_min(1e-3)
    return x.mean(dim=dims).tolist(), std.tolist()


def save_classifier(folder: Path, model: Classifier, config: dict) -> None:
    """`config` must hold: model, layers (list of dicts), shape, class_names."""
    config = {"kind": "classifier", **config,
              "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()}
    save_folder(folder, config, model.state_dict())


def load_classifier(folder: Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    from pydantic import TypeAdapter

    from pipeline.architectures import Layer

    config, weights = load_folder(folder)
    layers = TypeAdapter(list[Layer]).validate_python(config["layers"])
    model = make_classifier(layers, tuple(config["shape"]), len(config["class_names"]),
                            config["mean"], config["std"])
    model.load_state_dict(weights, strict=True)
    return model.to(device).eval(), config
