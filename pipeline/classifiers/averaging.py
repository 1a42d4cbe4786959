"""The exponential moving average of a classifier's weights that `train.ema_decay` selects and
keeps instead of the live weights (pipeline.classifiers.training)."""
from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """An exponential moving average of a model's weights and float buffers (torch's
    AveragedModel), updated after every optimiser step with decay min(decay, (1 + step) /
    (10 + step)): short at first, so that the average is not dominated by the weights the
    model started from. Integer buffers (BatchNorm's batch count) follow the live model."""

    def __init__(self, model: nn.Module, decay: float):
        from torch.optim.swa_utils import AveragedModel

        self.decay, self.steps = decay, 0
        self.averaged = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)
        self.module = self.averaged.module.requires_grad_(False)

    def _lerp(self, averaged: list[torch.Tensor], live: list[torch.Tensor], _count) -> None:
        # called per (device, dtype) group; the step count is kept here, not read from the
        # device (no host sync per step)
        if averaged[0].is_floating_point():
            decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
            torch._foreach_lerp_(averaged, live, 1.0 - decay)
        else:
            torch._foreach_copy_(averaged, live)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        self.averaged.update_parameters(model)
