"""The one training loop for every classifier.

Data sets that fit in memory live as one uint8 tensor on the device and are cut into shuffled
mini-batches by index (the plumbing is pipeline.core.batches, shared with the generators'
loop). Early stopping and best-checkpoint selection look at validation accuracy (ties broken
by validation loss), of the live weights or, with `ema_decay`, of their moving average.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.classifiers.averaging import WeightAverage
from synthaug.pipeline.classifiers.optim import optimizer, scheduler
from synthaug.pipeline.classifiers.use import Use
from synthaug.pipeline.core.batches import (ShuffledStream, as_tensor, batches, gather, inference_batch,
                                   layout, mixed_precision, place)
from synthaug.pipeline.core.distributed import SINGLE, Dist, broadcast_buffers, wrap
from synthaug.pipeline.core.errors import SynthaugError

if TYPE_CHECKING:
    from synthaug.pipeline.augment.expand import OnlineAugment


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device,
            batch_size: int = 512, amp: bool = False, channels_last: bool = True) -> torch.Tensor:
    """Logits (float32, CPU) for uint8 N x H x W x C images (or an N x C x H x W tensor).
    channels_last puts the model (in place) and the batches in the NHWC layout: same values,
    ~3x faster inference of depthwise-convolution networks on CPU."""
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    x = images if isinstance(images, torch.Tensor) else as_tensor(images, device)
    dtype, _ = mixed_precision(device, amp)
    batch_size = inference_batch(device, batch_size)
    out = []
    for i in range(0, len(x), batch_size):
        xb = layout(x[i:i + batch_size].to(device).float().div_(255), channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out.append(model(xb).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    history: list[dict] = field(default_factory=list)


def evaluate_loss_acc(model, x, y, batch_size, criterion, dtype, channels_last: bool = False,
                      dist: Dist = SINGLE) -> tuple[float, float]:
    """Mean loss and accuracy on (x, y); under torchrun each rank scores every world-th sample
    and the sums are added up, so every rank gets the same numbers."""
    model.eval()
    order = torch.arange(dist.rank, len(y), dist.world)
    batch_size = inference_batch(y.device, batch_size)
    total_loss = torch.zeros((), dtype=torch.float64, device=y.device)
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    with torch.no_grad():
        for xb, yb in batches(x, y, batch_size, channels_last=channels_last, order=order):
            with torch.autocast(y.device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(xb)
            total_loss += criterion(logits.float(), yb).double() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
    total_loss, correct = dist.sum(total_loss.item(), correct.item())
    n = max(1, len(y))
    return total_loss / n, correct / n


@dataclass
class _Loop:
    """What one `fit` call trains with: the data where the loop reads it, the sample stream,
    the optimiser, schedule, losses, precision and on-device augmentation."""
    xt: torch.Tensor | np.ndarray
    yt: torch.Tensor
    xv: torch.Tensor | np.ndarray
    yv: torch.Tensor
    epoch_size: int
    steps: int
    stream: ShuffledStream
    draw: torch.Tensor | None
    replace: Callable | None
    weights: torch.Tensor | None
    opt: torch.optim.Optimizer
    sched: object
    sched_every: str
    criterion: nn.Module
    per_sample: nn.Module
    dtype: torch.dtype | None
    scaler: object
    batch_aug: object = None
    aug_gen: torch.Generator | None = None
    semi: object = None  # pipeline.classifiers.semi.FixMatch: unlabelled images in each step
    average: WeightAverage | None = None  # ema_decay: the weights that are selected and kept


def _loop(model: nn.Module, train, val, cfg: TrainConfig, device: torch.device,
          generator: torch.Generator, use: Use | None, dist: Dist) -> _Loop:
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    yt = torch.as_tensor(np.asarray(train[1]), device=device)
    yv = torch.as_tensor(np.asarray(val[1]), device=device)
    xt, xv = place(train[0], device, cfg.load), place(val[0], device, cfg.load)
    # Every epoch is cfg.epoch_size samples of a stream of shuffled passes (0: one pass), so
    # that variants of different sizes get the same optimiser steps, early stopping and
    # schedule: the comparison measures their data, not their step counts.
    epoch_size = cfg.epoch_size or len(yt)
    draw = None if use is None else torch.as_tensor(use.base(), dtype=torch.long)
    stream = ShuffledStream(len(yt) if draw is None else len(draw), generator)
    replace = None if use is None else use.replacer(generator)
    weights = None if use is None else use.weights(device)
    steps = math.ceil(epoch_size / cfg.batch_size)
    opt = optimizer(model, cfg)
    sched, sched_every = scheduler(opt, cfg, steps)
    dtype, scaler = mixed_precision(device, cfg.amp, cfg.cpu_bf16)
    loop = _Loop(xt, yt, xv, yv, epoch_size, steps, stream, draw, replace, weights, opt, sched,
                 sched_every, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
                 nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, reduction="none"),
                 dtype, scaler)
    if cfg.batch_augment is not None:
        from synthaug.pipeline.augment.batch import BatchAugment
        from synthaug.pipeline.augment.config import resolve_batch_augment

        loop.batch_aug = BatchAugment(resolve_batch_augment(cfg.batch_augment))
        # its own stream on the device, one per rank (each rank augments its own part)
        seed = int(torch.randint(2**62, (1,), generator=generator)) + dist.rank
        loop.aug_gen = torch.Generator(device).manual_seed(seed)
    if use is not None and (semi := use.semi_config()) is not None:
        from synthaug.pipeline.classifiers.semi import FixMatch

        loop.semi = FixMatch(use.unlabelled, semi, device, generator, dist)
    if cfg.ema_decay:
        loop.average = WeightAverage(model, cfg.ema_decay)
    return loop


def _train_epoch(net: nn.Module, model: nn.Module, loop: _Loop, cfg: TrainConfig, epoch: int,
                 device: torch.device, augment: OnlineAugment | None, dist: Dist,
                 progress: bool) -> tuple[float, int, int]:
    """One epoch of optimiser steps: (loss sum, correct, samples) over all ranks. A loss that
    is not finite stops it with a SynthaugError naming the first such step."""
    model.train()
    run_loss = torch.zeros((), dtype=torch.float64, device=device)
    run_correct = torch.zeros((), dtype=torch.long, device=device)
    # the first step whose loss was not finite (-1: none), kept on the device: no sync
    step_no = torch.zeros((), dtype=torch.long, device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    seen = 0
    order = loop.stream.take(loop.epoch_size)
    if loop.draw is not None:  # indices into the training set; some swapped for a variant
        order = loop.draw[order] if loop.replace is None else loop.replace(loop.draw[order])
    aug_iter = None if augment is None else augment.batches(order, cfg.batch_size, epoch, device)
    bar = tqdm(range(0, loop.epoch_size, cfg.batch_size),
               disable=None if progress else True,  # None: only on a terminal
               desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False)
    for i in bar:
        idx = order[i:i + cfg.batch_size]
        part, weight = dist.part(len(idx))
        if aug_iter is None:
            xb, yb = gather(loop.xt, loop.yt, idx[part])
            xb = xb.float().div_(255)
        else:  # every rank draws the whole batch (CPU workers), keeps its part
            xb, yb = next(aug_iter)
            xb, yb = xb[part], yb[part]
        if loop.batch_aug is not None:
            xb = loop.batch_aug(xb, loop.aug_gen)
        xb = layout(xb, cfg.channels_last)
        with torch.autocast(device.type, dtype=loop.dtype, enabled=loop.dtype is not None):
            if loop.semi is None:
                logits = net(xb)
            else:  # with the unlabelled images' weak and strong views, in one pass
                logits, logits_u = loop.semi.forward(net, xb, cfg.batch_size, cfg.channels_last)
            if loop.weights is None:
                loss = loop.criterion(logits.float(), yb)
            else:  # gather (memory-mapped) reads a batch in ascending index order
                sel = idx[part] if aug_iter is not None or isinstance(loop.xt, torch.Tensor) \
                    else idx[part].sort().values
                w = loop.weights[sel.to(device)]
                loss = (loop.per_sample(logits.float(), yb) * w).sum() / w.sum().clamp_min(1e-12)
            if loop.semi is not None:
                loss = loss + loop.semi.loss(logits_u)
        _step(loop, loss * weight)
        if loop.average is not None:
            loop.average.update(model)
        n = len(yb) if weight else 0
        # sums stay on the device: no host sync per step
        run_loss += loss.detach().double() * n
        run_correct += (logits.argmax(1) == yb).sum() * (n > 0)
        step_no += 1
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), step_no, first_bad)
        seen += n
        if bar.disable is False and i % (16 * cfg.batch_size) == 0:
            bar.set_postfix(loss=f"{run_loss.item() / max(1, seen):.4f}")
    if aug_iter is not None:
        aug_iter.close()  # its worker processes end with the epoch
    if loop.sched_every == "epoch":
        loop.sched.step()
    broadcast_buffers(model, dist)  # BatchNorm statistics: rank 0's, on every rank
    if loop.average is not None:
        broadcast_buffers(loop.average.module, dist)
    train_loss, train_correct, seen = dist.sum(run_loss.item(), run_correct.item(), seen)
    if not math.isfinite(train_loss):  # once an epoch, on the sum: a NaN model is no result
        bad = int(first_bad.item())  # -1 here: another rank's loss went first
        where = (f"at step {(epoch - 1) * loop.steps + bad} (epoch {epoch}, batch {bad})"
                 if bad > 0 else f"in epoch {epoch}")
        raise SynthaugError(f"train.lr: the training loss is not finite {where} with "
                            f"train.lr={cfg.lr}; lower train.lr, or check the data")
    return train_loss, train_correct, seen


def _step(loop: _Loop, loss: torch.Tensor) -> None:
    """One optimiser step on `loss` (scaled under fp16), and the per-batch schedule."""
    loop.opt.zero_grad(set_to_none=True)
    if loop.scaler is not None:
        loop.scaler.scale(loss).backward()
        loop.scaler.step(loop.opt)
        loop.scaler.update()
    else:
        loss.backward()
        loop.opt.step()
    if loop.sched_every == "batch":
        loop.sched.step()


def fit(model: nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
        cfg: TrainConfig, device: torch.device, generator: torch.Generator,
        on_epoch: Callable[[dict], None] | None = None, progress: bool = True,
        augment: OnlineAugment | None = None, dist: Dist = SINGLE,
        use: Use | None = None) -> FitResult:
    """Train `model` on (images, labels) with early stopping on `val`; returns the best state.
    `on_epoch` gets each epoch's row (losses, accuracies, lr, seconds, best: improved or not).
    `augment` (built on the same training images) replaces each epoch's batches by freshly
    augmented ones, drawn on the CPU in the same shuffled order; `cfg.batch_augment` augments
    every batch on `device` instead. Under torchrun (`dist`) every rank trains its part of each
    batch and the gradients are averaged (pipeline.core.distributed): the same steps and data as
    one process. `use` (pipeline.classifiers.use): the variant's recipe of use (loss weights,
    swaps for synthetic variants, FixMatch on unlabelled images); trainer.fit_variant: its
    schedule."""
    loop = _loop(model, train, val, cfg, device, generator, use, dist)
    best = (-1.0, math.inf)
    result = FitResult(copy.deepcopy(model.state_dict()), 0, 0.0, 0, False, 0.0)
    start, stale, net, trainable = time.perf_counter(), 0, model, None
    for epoch in range(1, cfg.epochs + 1):
        if hasattr(model, "on_epoch_start"):  # e.g. gradual unfreezing
            model.on_epoch_start(epoch, cfg.epochs)
        now = tuple(p.requires_grad for p in model.parameters())
        if now != trainable:  # DDP syncs the parameters that train when it is built
            trainable, net = now, wrap(model, dist, device)
            if cfg.compile:
                net = torch.compile(net)
        train_loss, train_correct, seen = _train_epoch(net, model, loop, cfg, epoch, device,
                                                       augment, dist, progress)
        # the weights being selected: the live ones or their moving average
        chosen = model if loop.average is None else loop.average.module
        val_loss, val_acc = evaluate_loss_acc(chosen, loop.xv, loop.yv, 1024, loop.criterion,
                                              loop.dtype, cfg.channels_last, dist)
        row = {"epoch": epoch, "train_loss": train_loss / seen, "train_accuracy": train_correct / seen,
               "val_loss": val_loss, "val_accuracy": val_acc, "lr": loop.opt.param_groups[0]["lr"],
               "seconds": time.perf_counter() - start,
               "samples": int(seen),  # trained on this epoch, all ranks together
               **({} if loop.semi is None else loop.semi.stats())}
        result.history.append(row)
        result.epochs_run = epoch
        improved = (val_acc, -val_loss) > (best[0], -best[1])
        if improved:
            best = (val_acc, val_loss)
            result.best_state = {k: v.detach().clone() for k, v in chosen.state_dict().items()}
            result.best_epoch, result.best_val_accuracy, stale = epoch, val_acc, 0
        else:
            stale += 1
        row["best"] = improved
        if on_epoch is not None:
            on_epoch(row)
        if cfg.patience and stale >= cfg.patience:
            result.stopped_early = True
            break
    result.seconds = time.perf_counter() - start
    model.load_state_dict(result.best_state)
    return result

