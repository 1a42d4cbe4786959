"""The one training loop for every generator family.

A run is a budget of optimiser steps (`total_steps` of the family config), not of epochs:
batches come from back-to-back shuffled passes over the split, so a split of 100 images gets
as many updates as one of 5,000. Per step it trains each active part of the model in order
(GAN: discriminator, then generator; VAE: the whole model; latent diffusion: the autoencoder
in its first `autoencoder_steps`, the denoiser after), each with its own Adam optimiser and
learning-rate schedule, then updates an exponential moving average (EMA) of the weights that
sampling uses (diffusers' `EMAModel`, imported when a trainer is built: diffusers takes seconds).
Data live as one uint8 tensor on the device, cut into batches by index (as
pipeline.classifiers.training does for classifiers).

Everything a run depends on is in `state_dict()`: weights, EMA (and its step count), optimisers,
schedules, the grad scaler, RNG states and the batch stream's position, step and history.
Restoring it and training on gives the same weights, bit for bit on CPU, as never having
stopped: that is what resuming relies on.

Pretrain, then adapt (`pretrain` of the family config): given unlabelled `pretrain` images, the
first `pretrain_end` steps learn them under the null label (the extra class of the label
embeddings, classifier-free guidance's unconditional label), from their own batch stream; the
rest adapt to the labelled split class-conditionally. Each phase has its own learning-rate
schedule (warm-up and decay), and a round of `train_steps` never crosses the phase boundary.
"""
from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from synthaug.generators.common import GeneratorModel
from synthaug.generators.config import FamilyConfig, TrainGeneratorConfig
from synthaug.pipeline.core.distributed import SINGLE, Dist, all_reduce_grads, broadcast_buffers
from synthaug.pipeline.core.batches import ShuffledStream, as_tensor, batches, gather, layout
from synthaug.pipeline.core.batches import mixed_precision as _amp

VAL_BATCH = 256


def phased(cfg: FamilyConfig, first: int, rest: int) -> Callable[[int], float]:
    """The schedule of an optimiser with `first` steps in the pretraining phase and `rest` in
    the adapt phase: `lr_lambda` over each phase on its own (first = 0: one phase)."""
    pre, adapt = lr_lambda(cfg, first), lr_lambda(cfg, rest)
    return lambda step: pre(step) if step < first else adapt(step - first)


def lr_lambda(cfg: FamilyConfig, total: int) -> Callable[[int], float]:
    """Linear warm-up, then constant or cosine decay to 10% over `total` steps."""
    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        if cfg.lr_schedule == "constant":
            return warm
        return warm * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, step / max(1, total)))))
    return f


class GeneratorTrainer:
    """Trains `model` for its config's step budget (`total_steps`), in rounds of
    `train_steps(n)`; `done` once the budget (or the `max_seconds` cap) is spent. `pretrain`:
    the unlabelled images (uint8 N x H x W x C) of the pretraining phase, when the family
    config has one."""

    def __init__(self, model: GeneratorModel, cfg: TrainGeneratorConfig,
                 train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                 device: torch.device, generator: torch.Generator, dist: Dist = SINGLE,
                 pretrain: np.ndarray | None = None):
        # under torchrun (`dist`) every rank trains its part of each batch, gradients are
        # averaged over the ranks (pipeline.core.distributed) and rank 0's buffers are everyone's
        # channels-last layout: ~1.4x faster convolutions and up-sampling on CPU
        self.model, self.cfg, self.device = (model.to(device).to(memory_format=torch.channels_last),
                                             cfg, device)
        self.fcfg: FamilyConfig = model.config
        self.total = self.fcfg.total_steps
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        self.x, self.y = as_tensor(train[0], device), torch.as_tensor(np.asarray(train[1]), device=device)
        self.xv, self.yv = as_tensor(val[0], device), torch.as_tensor(np.asarray(val[1]), device=device)
        # batches from back-to-back shuffled passes: a step budget, whatever the split's size
        self.shuffle_gen = generator  # CPU: batch order
        self.stream = ShuffledStream(len(self.y), generator)
        self.parts = model.parts()
        active = [model.active_parts(s) for s in range(self.total)]
        # the first pretrain.steps steps that train the parts of the end learn the source, and
        # so do parts trained only before them (a latent diffusion's autoencoder): adapting
        # those to the split would move what the pretrained parts build on
        steps = self.fcfg.pretrain.active_steps
        self.pretrain_end = steps and next(s for s, a in enumerate(active) if a == active[-1]) + steps
        if (pretrain is None) != (self.pretrain_end == 0) or (pretrain is not None and not len(pretrain)):
            raise ValueError(f"{model.family}: pretrain images are needed exactly when "
                             "pretrain.source is set, and there must be some")
        if self.pretrain_end:  # the pretraining images, all under the null label
            self.xp = as_tensor(pretrain, device)
            self.yp = torch.full((len(pretrain),), model.num_classes, dtype=torch.long, device=device)
            self.pre_stream = ShuffledStream(len(pretrain), generator)
        seed = int(torch.randint(2**62, (1,), generator=generator))
        self.dist = dist
        # on device: noise, labels; each rank its own stream (its own part of the batch)
        self.noise_gen = torch.Generator(device).manual_seed(seed + dist.rank)
        self.val_seed = seed + 1
        self.optimizers, self.schedulers = {}, {}
        for name, part in self.parts.items():
            opt = torch.optim.Adam(part["params"], lr=part["lr"], betas=part["betas"],
                                   **({"fused": True} if device.type in ("cpu", "cuda") else {}))
            self.optimizers[name] = opt
            first = sum(name in a for a in active[:self.pretrain_end])
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(
                opt, phased(self.fcfg, first, sum(name in a for a in active) - first))
        self.dtype, self.scaler = _amp(device, cfg.amp, cfg.cpu_bf16)
        from diffusers.training_utils import EMAModel  # here, not at import: diffusers takes seconds
        live, ema = model.state_dict(), self.ema.state_dict()
        # EMAModel averages the tensors that require grad and copies the others: the live tensors
        # are handed over as aliases that require grad just for the float weights (and buffers)
        # under ema_prefix, trained now or not; its shadow tensors are self.ema's own, updated
        # in place. Decay min(ema_decay, (1 + step) / (10 + step)), short at first:
        # update_after_step=-1 makes its count `step` the trainer's step
        avg = {k: k.startswith(model.ema_prefix) and v.is_floating_point() for k, v in live.items()}
        self._live = [v.detach().requires_grad_(avg[k]) for k, v in live.items()]
        self.ema_model = EMAModel(self._live, decay=cfg.ema_decay, min_decay=0.0,
                                  update_after_step=-1, foreach=True)
        self.ema_model.shadow_params = [ema[k] for k in live]
        self._trainable: list[str] | None = None
        self.step, self.seconds, self.cut_short, self.history = 0, 0.0, False, []

    @property
    def done(self) -> bool:
        return self.step >= self.total or self.cut_short

    @property
    def phase(self) -> str:
        """"pretrain" while the next step learns the pretraining source, else "adapt"."""
        return "pretrain" if self.step < self.pretrain_end else "adapt"

    def _set_trainable(self, parts: list[str]) -> None:
        """Gradients for the parts trained now only (the autoencoder, say, is frozen after its
        steps); all parts of one step stay trainable, so a step may reuse one part's graph
        in another's loss (the GAN's fakes)."""
        if parts == self._trainable:
            return
        for name, p in self.parts.items():
            for param in p["params"]:
                param.requires_grad_(name in parts)
        self._trainable = list(parts)

    def train_steps(self, n: int, bar=None) -> dict:
        """Up to `n` more optimiser steps (fewer at the end of the budget or of `max_seconds`);
        returns their row: last step, mean losses, learning rates, seconds. `bar`: a tqdm bar
        to advance per step."""
        start = time.perf_counter()
        model, d = self.model, self.dist
        cap = self.fcfg.max_seconds
        model.train()
        sums, seen, parts = defaultdict(float), 0, []
        # the first step (1-based) whose loss was not finite (0: none), and its part's number:
        # kept on the device, read once a round
        first_bad = torch.zeros(2, dtype=torch.long, device=self.device)
        names = list(self.parts)
        phase = self.phase
        if phase == "pretrain":  # a round stays within its phase
            n = min(n, self.pretrain_end - self.step)
        x, y, stream = ((self.xp, self.yp, self.pre_stream) if phase == "pretrain"
                        else (self.x, self.y, self.stream))
        for _ in range(n):
            if self.done:
                break
            if cap and self.seconds + time.perf_counter() - start >= cap:
                self.cut_short = True  # reported by the caller; the budget was not spent
                break
            model.step = self.ema.step = self.step
            parts = model.active_parts(self.step)
            self._set_trainable(parts)
            idx = stream.take(model.batch_size(self.step))
            part, weight = d.part(len(idx))
            xb, yb = gather(x, y, idx[part])
            xb = layout(xb.float().div_(255), True)
            w = len(yb) if weight else 0
            for name in parts:
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
                    sums[f"{name}_{k}"] += float(v.detach()) * w
                bad = (first_bad[0] == 0) & ~torch.isfinite(losses["loss"].detach())
                first_bad = torch.where(bad, torch.stack([first_bad.new_tensor(self.step + 1),
                                                          first_bad.new_tensor(names.index(name))]),
                                        first_bad)
            if self.scaler is not None:
                self.scaler.update()
            broadcast_buffers(model, d)
            self.step += 1
            self.ema_model.step(self._live)
            seen += w
            if bar is not None:
                bar.update(1)
        keys = list(sums)  # the same order on every rank
        step, part = first_bad.tolist()
        *totals, seen, diverged = d.sum(*(sums[k] for k in keys), seen, float(step > 0))
        if diverged:  # every rank stops: a model of NaN weights is no result
            self.diverged(step, names[part] if step else None)
        row = {"step": self.step, **{k: v / max(1, seen) for k, v in zip(keys, totals)},
               **{f"lr_{p}": self.optimizers[p].param_groups[0]["lr"] for p in parts}}
        if self.pretrain_end:
            row["phase"] = phase
        row["seconds"] = time.perf_counter() - start
        self.seconds += row["seconds"]
        return row

    def diverged(self, step: int, part: str | None) -> None:
        """Stop with one line naming the step, the loss and the learning-rate setting."""
        from synthaug.pipeline.core.errors import SynthaugError

        family = self.model.family
        what = (f"the {part} loss is not finite at step {step}" if part else
                f"a loss is not finite (on another rank) by step {self.step}")
        setting = f"train_generator.{family}.lr"
        raise SynthaugError(f"{setting}: {what} with {setting}={self.fcfg.lr:g}; lower "
                            f"{setting}, or check the data")

    @torch.no_grad()
    def validate(self) -> dict:
        """Mean losses of the EMA model on the val split, with the same noise every time."""
        gen = torch.Generator(self.device).manual_seed(self.val_seed)
        sums, seen = defaultdict(float), 0
        for xb, yb in batches(self.xv, self.yv, VAL_BATCH):
            for name in self.model.active_parts(max(0, self.step - 1)):
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                    losses = self.ema(xb, yb, name, gen)
                for k, v in losses.items():
                    sums[f"val_{name}_{k}"] += float(v.detach()) * len(yb)
            seen += len(yb)
        return {k: v / max(1, seen) for k, v in sums.items()}

    def state_dict(self) -> dict:
        rng = {"shuffle": self.shuffle_gen.get_state(), "noise": self.noise_gen.get_state(),
               "torch": torch.get_rng_state()}
        return {"step": self.step, "seconds": self.seconds, "cut_short": self.cut_short,
                "stream": self.stream.left.clone(), "history": self.history,
                "model": self.model.state_dict(), "ema": self.ema.state_dict(),  # the shadow tensors
                "ema_model": {k: v for k, v in self.ema_model.state_dict().items()
                              if k != "shadow_params"},  # its settings and step count
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "rng": rng,
                **({"pretrain_stream": self.pre_stream.left.clone()} if self.pretrain_end else {})}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])  # in place: still EMAModel's shadow tensors
        self.ema_model.load_state_dict(state.get("ema_model", {"optimization_step": state["step"]}))
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.shuffle_gen.set_state(state["rng"]["shuffle"])
        self.noise_gen.set_state(state["rng"]["noise"])
        torch.set_rng_state(state["rng"]["torch"])
        self.stream.left = state["stream"].clone()
        if self.pretrain_end:
            self.pre_stream.left = state["pretrain_stream"].clone()
        self.step, self.seconds, self.cut_short = state["step"], state["seconds"], state["cut_short"]
        self.history = list(state["history"])
        self.model.step = self.ema.step = self.step
