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

from synthaug.pipeline.core.checkpoint import RETRAIN, first_line, fit_weights, load_folder, save_folder
from synthaug.pipeline.core.errors import SynthaugError


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
    from synthaug.pipeline.classifiers.layers import build_model

    return Classifier(build_model(layers, shape, num_classes), mean, std)


def build_classifier(name: str, custom: dict[str, list], shape: tuple[int, int, int],
                     class_names: list[str], images, cfg=None) -> tuple[nn.Module, dict]:
    """A fresh classifier `name` for `shape` images and its architecture record.

    The record (model, layers, shape, class_names) goes into the saved config.json, so that
    `load_classifier` can rebuild the model without params.yaml. Transfer models (ImageNet
    weights) take their settings from `cfg` (a TrainConfig) and record them under "transfer".
    """
    from synthaug.pipeline.classifiers.config import TrainConfig
    from synthaug.pipeline.classifiers.names import model_kind

    if model_kind(name, custom) == "transfer":
        from synthaug.pipeline.classifiers.transfer import build_transfer

        cfg = cfg or TrainConfig()
        if shape[0] not in (1, 3):
            raise SynthaugError(f"{name}: needs 1- or 3-channel images (got {shape[0]})")
        model, source = build_transfer(name, len(class_names), weights=cfg.weights,
                                       download=cfg.download_weights, strategy=cfg.strategy,
                                       input_size=cfg.input_size,
                                       backbone_lr_mult=cfg.backbone_lr_mult,
                                       unfreeze_every=cfg.unfreeze_every,
                                       freeze_bn=cfg.freeze_bn, frozen_groups=cfg.frozen_groups)
        return model, {"model": name, "layers": [], "shape": list(shape),
                       "class_names": list(class_names),
                       "transfer": {**model.settings(), "pretrained": source}}

    from synthaug.pipeline.classifiers.layers import resolve_layers

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


NUMBER = (int, float)
# config.json's keys and their JSON types: the architecture record (required) and what the
# stages add about the run (optional); anything else means the file was edited or is foreign
CONFIG_KEYS = {"kind": str, "model": str, "layers": list, "shape": list, "class_names": list,
               "mean": list, "std": list}
RECORD_KEYS = {"transfer": dict, "train": dict, "trained_on": dict, "judge": dict,
               "best_epoch": int, "best_val_accuracy": NUMBER, "run_id": str}


def check_config(config: dict, path: Path) -> None:
    """A SynthaugError naming `path` (a config.json) when its keys or their types are not a
    classifier's."""
    def bad(what: str) -> SynthaugError:
        return SynthaugError(f"{path}: {what}; {RETRAIN}")

    if config.get("kind") != "classifier":
        raise bad(f"not a classifier's config (kind {config.get('kind')!r})")
    if missing := [k for k in CONFIG_KEYS if k not in config]:
        raise bad(f"missing key(s) {', '.join(missing)}")
    if unknown := sorted(set(config) - set(CONFIG_KEYS) - set(RECORD_KEYS)):
        raise bad(f"unknown key(s) {', '.join(unknown)}")
    for key, kind in {**CONFIG_KEYS, **RECORD_KEYS}.items():
        if key in config and (not isinstance(config[key], kind) or isinstance(config[key], bool)):
            raise bad(f"{key!r} is {type(config[key]).__name__}, not "
                      f"{getattr(kind, '__name__', 'a number')}")
    shape, names = config["shape"], config["class_names"]
    if len(shape) != 3 or not all(type(d) is int and d > 0 for d in shape):
        raise bad(f"'shape' {shape} is not [C, H, W] of positive integers")
    if not names or not all(isinstance(c, str) for c in names):
        raise bad("'class_names' must be a non-empty list of strings")
    for key in ("mean", "std"):
        v = config[key]
        if not v or not all(isinstance(x, NUMBER) and not isinstance(x, bool) for x in v) or \
                ("transfer" not in config and len(v) != shape[0]):
            raise bad(f"{key!r} must be one number per channel")


def load_classifier(folder: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The classifier saved in `folder` (`save_classifier`) and its config, in eval mode. An
    edited or foreign config.json, or weights that do not fit it, are one SynthaugError naming
    the file."""
    from pydantic import TypeAdapter, ValidationError

    from synthaug.pipeline.classifiers.architectures import Layer

    config, weights = load_folder(folder)
    path = Path(folder) / "config.json"
    check_config(config, path)
    try:
        if "transfer" in config:  # the saved weights replace everything: no ImageNet file
            from synthaug.pipeline.classifiers.transfer import build_transfer

            settings = {k: v for k, v in config["transfer"].items() if k != "pretrained"}
            model, _ = build_transfer(config["model"], len(config["class_names"]),
                                      pretrained=False, **settings)
        else:
            layers = TypeAdapter(list[Layer]).validate_python(config["layers"])
            model = make_classifier(layers, tuple(config["shape"]), len(config["class_names"]),
                                    config["mean"], config["std"])
    except (KeyError, TypeError, ValueError, ValidationError, RuntimeError, SynthaugError) as e:
        raise SynthaugError(f"{path}: does not describe a classifier synthaug can build "
                            f"({first_line(e)}); {RETRAIN}") from None
    fit_weights(model, weights, Path(folder) / "weights.safetensors")
    return model.to(device).eval(), config
