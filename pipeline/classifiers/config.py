"""The `train` and `evaluate` sections: one classifier recipe (from scratch or transfer
learning) and how held-out splits are scored."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError, field_validator

from synthaug.pipeline.augment.config import AugmentSpec, BatchAugmentSpec
from synthaug.pipeline.core.settings import Device, Seed, Section, format_error



class TrainConfig(Section):
    model: str = Field("cnn", description=(
        "lenet5, cnn, resnet_small, efficientnet_lite0, resnet18, mobilenet_v3_small or a name "
        "under models"))
    epochs: PositiveInt = Field(6, description="maximum epochs")
    batch_size: PositiveInt = Field(64, description="training batch size")
    epoch_size: NonNegativeInt = Field(1024, description=(
        "samples per epoch, from back-to-back shuffled passes: every variant gets the same "
        "optimiser steps whatever its size (0: one pass per epoch)"))
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description=(
        "adamw, adam or sgd (Nesterov, with momentum)"))
    lr: PositiveFloat = Field(3e-3, description="peak learning rate")
    weight_decay: NonNegativeFloat = Field(1e-4, description="weight decay")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only")
    scheduler: Literal["onecycle", "cosine", "step", "none"] = Field("onecycle", description=(
        "learning-rate schedule: onecycle, cosine (per batch), step (x0.1 every third of the "
        "epochs) or none"))
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="label smoothing of the loss")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "model selection and the saved model use an exponential moving average of the weights, "
        "updated after every step with decay min(ema_decay, (1 + step) / (10 + step)); 0 = "
        "the live weights"))
    patience: NonNegativeInt = Field(3, description=(
        "early stopping: epochs without a better val accuracy; 0 = never stop early"))
    seed: Seed = Field(0, description="weight initialisation and batch order")
    device: Device = Field("auto", description=(
        "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"))
    amp: bool = Field(True, description="mixed precision on CUDA (bf16 where supported, else fp16)")
    cpu_bf16: bool = Field(True, description=(
        "bf16 autocast on CPUs that run bf16 natively (AVX512-BF16, AMX); fp32 elsewhere"))
    channels_last: bool = Field(True, description=(
        "NHWC memory layout for model and batches: faster convolutions on CPU and GPU"))
    threads: NonNegativeInt = Field(0, description=(
        "CPU threads for torch in each training process; 0 = a worker's share of the cores "
        "(study.workers, sweep.workers), or torch's default in a single process"))
    online_augment: AugmentSpec | None = Field(None, description=(
        "preset or step list (as augment.pipeline) applied on the CPU every epoch; a variant's "
        "own online_augment takes precedence"))
    workers: NonNegativeInt | None = Field(None, description=(
        "online augmentation processes; null = cores - 1 (at most 4), 0 = in the training "
        "process"))
    batch_augment: BatchAugmentSpec | None = Field(None, description=(
        "light, medium, heavy or a mapping of the fields below: per-image random "
        "affine/erase/noise/jitter of every batch, on the training device"))
    load: Literal["auto", "memory", "mmap"] = Field("auto", description=(
        "training data as one tensor on the device (memory) or read per batch from the "
        "memory-mapped file (mmap); auto: memory when it takes at most a quarter of the free "
        "memory"))
    compile: bool = Field(False, description=(
        "torch.compile the model (a one-off compile, then faster steps)"))
    # transfer models only (names.TRANSFER_MODELS)
    strategy: Literal["linear_probe", "finetune", "gradual_unfreeze"] = Field(
        "finetune", description=(
            "transfer models: linear_probe (head only), finetune (everything) or "
            "gradual_unfreeze (the head, then one more block group at a time)"))
    input_size: int = Field(32, ge=16, le=1024, description=(
        "transfer models: images are resized to this inside the model"))
    backbone_lr_mult: PositiveFloat = Field(1.0, description=(
        "transfer models: backbone lr = lr * this (finetune, gradual_unfreeze)"))
    unfreeze_every: PositiveInt = Field(1, description=(
        "gradual_unfreeze: epochs per newly unfrozen block group, top down"))
    freeze_bn: bool = Field(False, description=(
        "transfer models: the backbone's BatchNorm keeps its ImageNet running statistics "
        "(eval mode) while its weights train"))
    frozen_groups: NonNegativeInt = Field(0, description=(
        "transfer models: the backbone's bottom N block groups never train (finetune, "
        "gradual_unfreeze): no backward pass through the early, high-resolution layers"))
    weights: Path | None = Field(None, description=(
        "ImageNet weights file (.pth or .safetensors); null: the package's file or the torch "
        "hub cache"))
    download_weights: bool = Field(False, description=(
        "torchvision models: allow downloading into the torch hub cache"))
    per_model: dict[str, dict[str, Any]] = Field(default={
        "efficientnet_lite0": {"epochs": 5, "epoch_size": 1024, "batch_size": 32, "lr": 0.002,
                               "backbone_lr_mult": 0.5, "freeze_bn": True, "input_size": 40,
                               "frozen_groups": 3, "cpu_bf16": False, "ema_decay": 0.9}},
        description=(
        "model name -> train fields that replace the ones above when that model trains (a "
        "pretrained network wants a lower rate and fewer, shorter epochs than one from "
        "scratch); any field but model, seed and per_model"))

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


def recipe(train: TrainConfig, model: str, seed: int, epochs: int | None = None, *,
           scoring: bool = False) -> TrainConfig:
    """The TrainConfig `model` trains with at `seed`: the one place it is built, for a study
    cell and a sweep point (`train` is the train section) and for the judge and CAS (the
    stages pass TrainConfig's defaults, so tuning `train` leaves the quality scores valid).

    `train` with model and seed set (and `epochs`, if given), `train.per_model[model]`'s
    fields on top and `per_model` emptied: one model's recipe. scoring=True (the judge, CAS)
    applies no per-model fields (`per_model` is kept as given) and no online augmentation:
    the sets are scored as they are.
    """
    data = train.model_dump()
    if scoring:
        data["online_augment"] = None
    else:
        data.update(train.per_model.get(model, {}), per_model={})
    data.update(model=model, seed=seed)
    if epochs is not None:
        data["epochs"] = epochs
    return TrainConfig.model_validate(data)


class EvaluateConfig(Section):
    batch_size: PositiveInt = Field(512, description=(
        "scoring batch size (on a CPU at most 64: larger batches spill its caches)"))
    device: Device = Field("auto", description=(
        "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"))


