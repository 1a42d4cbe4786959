"""The classifier loop's optimiser (torch's fused AdamW / Adam / SGD, a model's own parameter
groups) and learning-rate schedule (torch.optim.lr_scheduler)."""
from __future__ import annotations

import math

import torch
from torch import nn

from synthaug.pipeline.classifiers.config import TrainConfig


def optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # A model may hand out its own parameter groups (transfer learning: discriminative learning
    # rates, and layers that a strategy unfreezes later must be in the optimizer from the start).
    if hasattr(model, "param_groups"):
        params = model.param_groups(cfg.lr)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    # one fused kernel over all parameters (CPU and CUDA): 7x faster than torch's per-tensor
    # default on CPU, where a 200-tensor network spent a tenth of its step in the optimiser
    device = next(model.parameters()).device.type
    fused = {"fused": True} if device in ("cpu", "cuda") else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0, **fused)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


def scheduler(opt, cfg: TrainConfig, steps_per_epoch: int):
    """Returns (scheduler, steps per call): per-batch for onecycle/cosine, per-epoch for step."""
    total = cfg.epochs * steps_per_epoch
    if cfg.scheduler == "onecycle" and total >= 10:  # OneCycleLR divides by zero on tiny runs
        max_lr = [g["lr"] for g in opt.param_groups]  # per group: discriminative rates survive
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total,
                                                   pct_start=0.25), "batch"
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total), "batch"
    if cfg.scheduler == "step":
        step = max(1, math.ceil(cfg.epochs / 3))
        return torch.optim.lr_scheduler.StepLR(opt, step_size=step, gamma=0.1), "epoch"
    return None, None
