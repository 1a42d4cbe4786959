"""The `train` and `evaluate` sections: one classifier recipe (from scratch or transfer
learning) and how held-out splits are scored."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError, field_validator

from pipeline.augment.config import AugmentSpec, BatchAugmentSpec
from pipeline.core.settings import Device, Section, format_error

# ImageNet-pretrained classifiers (pipeline/classifiers/transfer.py); named here so that validation and
# `--help` need no torch import
TRANSFER_MODELS = ("efficientnet_lite0", "resnet18", "mobilenet_v3_small")


class TrainConfig(Section):
    model: str = "cnn"
    epochs: PositiveInt = 6
    batch_size: PositiveInt = 64
    epoch_size: NonNegativeInt = 1024  # samples per epoch, from back-to-back shuffled passes;
    # every variant gets the same steps whatever its size (0: one pass per epoch)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: PositiveFloat = 3e-3
    weight_decay: NonNegativeFloat = 1e-4
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # sgd only
    scheduler: Literal["onecycle", "cosine", "step", "none"] = "onecycle"
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    patience: NonNegativeInt = 3  # epochs without val improvement before stopping; 0 = never
    seed: int = 0
    device: Device = "auto"  # auto = cuda, then mps, then cpu
    amp: bool = True  # mixed precision, CUDA only
    cpu_bf16: bool = True  # bf16 autocast on CPUs with native bf16 (AVX512-BF16, AMX)
    channels_last: bool = True  # NHWC memory layout: faster convolutions on CPU and GPU
    threads: NonNegativeInt = 0  # CPU threads for torch; 0 = torch's default
    online_augment: AugmentSpec | None = None  # preset or steps applied each epoch (CPU)
    workers: NonNegativeInt | None = None  # online augmentation processes; None = auto
    # per-image random affine/erase/noise/jitter on each batch, on the training device
    batch_augment: BatchAugmentSpec | None = None
    load: Literal["auto", "memory", "mmap"] = "auto"  # training data: resident tensor or mmap
    compile: bool = False  # torch.compile the model (a one-off compile, then faster steps)
    # transfer models only (TRANSFER_MODELS)
    strategy: Literal["linear_probe", "finetune", "gradual_unfreeze"] = "finetune"
    input_size: int = Field(32, ge=16, le=1024)  # images are resized to this inside the model
    backbone_lr_mult: PositiveFloat = 1.0  # backbone lr = lr * this (finetune, gradual_unfreeze)
    unfreeze_every: PositiveInt = 1  # gradual_unfreeze: epochs per newly unfrozen block group
    freeze_bn: bool = False  # backbone BatchNorm keeps ImageNet running stats (eval) in training
    weights: Path | None = None  # ImageNet weights file; default: package / torch hub cache
    download_weights: bool = False  # torchvision models: allow downloading into the hub cache
    # model name -> recipe fields that replace the ones above when that model trains (a
    # pretrained network wants a lower rate and fewer, shorter epochs than one from scratch)
    per_model: dict[str, dict[str, Any]] = {
        "efficientnet_lite0": {"epochs": 3, "epoch_size": 1024, "batch_size": 32, "lr": 0.002,
                               "backbone_lr_mult": 0.5, "freeze_bn": True, "input_size": 40,
                               "cpu_bf16": False}}

    @field_validator("per_model")
    @classmethod
    def _recipes(cls, v: dict) -> dict:
        for name, fields in v.items():
            bad = sorted(set(fields) - set(cls.model_fields) | set(fields) & {"model", "seed",
                                                                             "per_model"})
            if bad:
                raise ValueError(f"{name}.{bad[0]}: not a per-model recipe field")
            try:  # each value valid where it lands
                TrainConfig.model_validate(fields)
            except ValidationError as e:
                raise ValueError(f"{name}.{format_error(e)}") from None
        return v

    def for_model(self, name: str, seed: int | None = None) -> TrainConfig:
        """This recipe for `name`: its `per_model` fields on top, model (and seed) set."""
        data = self.model_dump()
        data.update(self.per_model.get(name, {}), model=name, per_model={})
        if seed is not None:
            data["seed"] = seed
        return TrainConfig.model_validate(data)


class EvaluateConfig(Section):
    batch_size: PositiveInt = 512
    device: Device = "auto"


