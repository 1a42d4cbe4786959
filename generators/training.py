"""The one training loop for every generator family.

Per batch it trains each active part of the model in order (GAN: discriminator, then
generator; VAE: the whole model; latent diffusion: the autoencoder in its first epochs, the
denoiser after), each with its own Adam optimiser and learning-rate schedule, then updates an
exponential moving average (EMA) of the weights that sampling uses. Data live as one uint8
tensor on the device, cut into shuffled batches (as pipeline.training does for classifiers).

Everything a run depends on is in `state_dict()`: weights, EMA, optimisers, schedules, the
grad scaler, RNG states, epoch and history. Restoring it and training on gives the same
weights, bit for bit on CPU, as never having stopped: that is what resuming relies on.
"""
from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from generators.common import GeneratorModel
from generators.config import FamilyConfig, TrainGeneratorConfig
from pipeline.distributed import SINGLE, Dist, all_reduce_grads, broadcast_buffers
from pipeline.training import _amp, as_tensor, batches, gather, layout

VAL_BATCH = 256


def lr_lambda(cfg: FamilyConfig, total: int) -> Callable[[int], float]:
    """Linear warm-up, then constant or cosine decay to 10% over `total` steps."""
    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        if cfg.lr_schedule == "constant":
            return warm
        return warm * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, step / max(1, total)))))
    return f


class GeneratorTrainer:
    def __init__(self, model: GeneratorModel, cfg: TrainGeneratorConfig,
                 train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                 device: torch.device, generator: torch.Generator, dist: Dist = SINGLE):
        # under torchrun (`dist`) every rank trains its part of each batch, gradients are
        # averaged over the ranks (pipeline.distributed) and rank 0's buffers are everyone's
        # channels-last layout: ~1.4x faster convolutions and up-sampling on CPU
        self.model, self.cfg, self.device = (model.to(device).to(memory_format=torch.channels_last),
                                             cfg, device)
        self.fcfg: FamilyConfig = model.config
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        self.x, self.y = as_tensor(train[0], device), torch.as_tensor(np.asarray(train[1]), device=device)
        self.xv, self.yv = as_tensor(val[0], device), torch.as_tensor(np.asarray(val[1]), device=device)
        self.steps_per_epoch = math.ceil(len(self.y) / self.fcfg.batch_size)
        self.shuffle_gen = generator  # CPU: batch order
        seed = int(torch.randint(2**62, (1,), generator=generator))
        self.dist = dist
        # on device: noise, labels; each rank its own stream (its own part of the batch)
        self.noise_gen = torch.Generator(device).manual_seed(seed + dist.rank)
        self.val_seed = seed + 1
        self.parts = model.parts()
        self.optimizers, self.schedulers = {}, {}
        for name, part in self.parts.items():
            epochs = sum(name in model.active_parts(e) for e in range(1, self.fcfg.epochs + 1))
            opt = torch.optim.Adam(part["params"], lr=part["lr"], betas=part["betas"],
                                   **({"fused": True} if device.type in ("cpu", "cuda") else {}))
            self.optimizers[name] = opt
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(
                opt, lr_lambda(self.fcfg, epochs * self.steps_per_epoch))
        self.dtype, self.scaler = _amp(device, cfg.amp)
        live, ema = model.state_dict(), self.ema.state_dict()
        # pairs of (ema, live) tensors: averaged ones (float weights under ema_prefix), copied ones
        self._avg = [(ema[k], v) for k, v in live.items()
                     if k.startswith(model.ema_prefix) and v.is_floating_point()]
        self._copy = [(ema[k], v) for k, v in live.items()
                      if not (k.startswith(model.ema_prefix) and v.is_floating_point())]
        self.epoch, self.step, self.history = 0, 0, []

    @property
    def done(self) -> bool:
        return self.epoch >= self.fcfg.epochs

    def _set_trainable(self, part: str) -> None:
        for name, p in self.parts.items():
            for param in p["params"]:
                param.requires_grad_(name == part)

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))  # short at first
        for e, v in self._avg:
            e.lerp_(v, 1 - decay)
        for e, v in self._copy:
            e.copy_(v)

    def train_epoch(self, progress: bool = False) -> dict:
        """One pass over the training set; returns the epoch's row (mean losses, lr, time)."""
        start = time.perf_counter()
        self.epoch += 1
        model = self.model
        model.epoch = self.ema.epoch = self.epoch
        parts = model.active_parts(self.epoch)
        model.train()
        sums, seen = defaultdict(float), 0
        order = torch.randperm(len(self.y), generator=self.shuffle_gen)
        bs, d = self.fcfg.batch_size, self.dist
        bar = tqdm(range(0, len(order), bs), disable=None if progress and d.main else True,
                   leave=False, desc=f"epoch {self.epoch}/{self.fcfg.epochs}", unit="batch")
        for i in bar:
            idx = order[i:i + bs]
            part, weight = d.part(len(idx))
            xb, yb = gather(self.x, self.y, idx[part])
            xb = layout(xb.float().div_(255), True)
            n = len(yb) if weight else 0
            for name in parts:
                self._set_trainable(name)
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                    losses = model(xb, yb, name, self.noise_gen)
                opt = self.optimizers[name]
                opt.zero_grad(set_to_none=True)
                loss = losses["loss"] * weight
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
                all_reduce_grads(self.parts[name]["params"], d)
                if self.scaler is not None:
                    self.scaler.step(opt)
                else:
                    opt.step()
                self.schedulers[name].step()
                for k, v in losses.items():
                    sums[f"{name}_{k}"] += float(v.detach()) * n
            if self.scaler is not None:
                self.scaler.update()
            broadcast_buffers(model, d)
            self.step += 1
            self._update_ema()
            seen += n
        keys = list(sums)  # the same order on every rank
        *totals, seen = d.sum(*(sums[k] for k in keys), seen)
        sums = dict(zip(keys, totals))
        row = {"epoch": self.epoch, **{k: v / seen for k, v in sums.items()},
               **{f"lr_{n}": self.optimizers[n].param_groups[0]["lr"] for n in parts}}
        row["seconds"] = time.perf_counter() - start
        return row

    @torch.no_grad()
    def validate(self) -> dict:
        """Mean losses of the EMA model on the val split, with the same noise every time."""
        gen = torch.Generator(self.device).manual_seed(self.val_seed)
        sums, seen = defaultdict(float), 0
        for xb, yb in batches(self.xv, self.yv, VAL_BATCH):
            for name in self.model.active_parts(self.epoch):
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                    losses = self.ema(xb, yb, name, gen)
                for k, v in losses.items():
                    sums[f"val_{name}_{k}"] += float(v.detach()) * len(yb)
            seen += len(yb)
        return {k: v / max(1, seen) for k, v in sums.items()}

    def state_dict(self) -> dict:
        rng = {"shuffle": self.shuffle_gen.get_state(), "noise": self.noise_gen.get_state(),
               "torch": torch.get_rng_state()}
        return {"epoch": self.epoch, "step": self.step, "history": self.history,
                "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "rng": rng}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.shuffle_gen.set_state(state["rng"]["shuffle"])
        self.noise_gen.set_state(state["rng"]["noise"])
        torch.set_rng_state(state["rng"]["torch"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], list(state["history"])
        self.model.epoch = self.ema.epoch = self.epoch
