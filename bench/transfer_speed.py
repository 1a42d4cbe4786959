"""bench/transfer_speed: train-step images/s of a transfer model on CPU (forward + backward +
AdamW step through TransferClassifier, model and input channels last, finetune strategy), with
pipeline/classifiers/efficientnet.py's CPU speed-ups against the plain way, in one run.

    .venv/bin/python bench/transfer_speed.py [--model efficientnet_lite0] [--batch 128]
        [--size 32] [--threads 2] [--steps 10] [--plain] [--freeze-bn]
    .venv/bin/python bench/transfer_speed.py --tiny   # batch 8, 2 steps each way (CI)

The baseline turns off the speed-ups (kernel cropping, tap-sum weight gradients, 1x1
convolutions as matmuls, frozen BatchNorms folded into the convolutions): the same numbers,
computed the plain way, on a fresh model of the same seed. --plain times the plain way alone.
--freeze-bn trains with BatchNorm statistics frozen (the study's efficientnet_lite0 recipe).
Prints the median and the best step of each way and the ratio of the medians.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time

from _common import add_tiny, machine, ratio

_SPEEDUPS = ("_plan", "_tap_sums_pay", "POINTWISE_MATMUL", "FOLD_FROZEN_BN")


@contextlib.contextmanager
def plain():
    """Full kernels with TF padding, PyTorch's weight gradients, 1x1 convolutions as such;
    the speed-ups back on leaving."""
    from synthaug.pipeline.classifiers import efficientnet as E

    def full(size: int, k: int, stride: int):
        pad = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
        return 0, k, pad // 2, pad - pad // 2

    saved = {name: getattr(E, name) for name in _SPEEDUPS}
    E._plan, E._tap_sums_pay = full, lambda *a: False
    E.POINTWISE_MATMUL = E.FOLD_FROZEN_BN = False
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(E, name, value)


def step_times(args) -> list[float]:
    """Seconds of each of --steps train steps on a fresh model (after 2 warm-up steps)."""
    import torch
    import torch.nn.functional as F

    from synthaug.pipeline.classifiers.transfer import build_transfer

    torch.manual_seed(0)
    model, _ = build_transfer(args.model, 10, pretrained=False, input_size=args.size,
                               freeze_bn=args.freeze_bn)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.param_groups(1e-3))
    x = torch.rand(args.batch, 1, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(2):  # warm-up: oneDNN primitive caches, allocator
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32, help="input_size inside the model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--plain", action="store_true", help="the plain way alone (no ratio)")
    ap.add_argument("--freeze-bn", action="store_true")
    add_tiny(ap)
    args = ap.parse_args()
    if args.tiny:
        args.batch, args.steps = 8, 2

    import torch

    torch.set_num_threads(args.threads)
    print(machine())
    ways = {"plain": plain} if args.plain else {"speed-ups": contextlib.nullcontext, "plain": plain}
    median = {}
    for way, context in ways.items():
        with context():
            times = step_times(args)
        median[way] = args.batch / statistics.median(times)
        print(f"{args.model} ({way}): {args.batch} x 1x{args.size}x{args.size}, "
              f"{args.threads} threads: median {median[way]:.0f} img/s, "
              f"best {args.batch / min(times):.0f} img/s", flush=True)
    if not args.plain:
        ratio(f"{median['speed-ups'] / median['plain']:.2f}x the plain way's median img/s "
              f"({args.model}, {args.size} px)")


if __name__ == "__main__":
    main()
