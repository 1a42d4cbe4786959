"""bench/classifier_throughput: training images/s of `pipeline.classifiers.training.fit` against a
PyTorch-examples-style DataLoader loop (pytorch/examples mnist/main.py: a Dataset of PIL images,
ToTensor + Normalize per sample, DataLoader(shuffle) with 0 workers as the examples
run on CPU and 1 as on CUDA, a plain step loop), on the
same MNIST-5k images, model, optimiser, batch size and threads, in one run, printed as a ratio.

    .venv/bin/python bench/classifier_throughput.py [--model cnn] [--epochs 3] [--batch-size 64]
        [--device auto] [--compile] [--rounds 3] [--images 4000]
    .venv/bin/python bench/classifier_throughput.py --tiny   # 256 images, 2 epochs, 1 round (CI)

Bar (issue 7): fit's epoch throughput >= 3x the DataLoader loop's on CPU. Each way runs once
per round, in a fresh process, the ways taking turns (a machine whose speed drifts slows them
alike); each figure is its best epoch over --rounds runs of --epochs epochs (the first epoch
of each run warms up).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import add_tiny, machine, ratio  # bench/: the script's own folder


def mnist5k():
    from synthaug.pipeline.data.config import PrepareConfig
    from synthaug.pipeline.data.sources import load_source

    src = load_source(PrepareConfig(), Path("data/raw"), progress=False)
    return src.images, src.labels


class PILDigits:
    """torchvision.datasets.MNIST's way: uint8 arrays in memory, a PIL image per __getitem__."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images[..., 0], labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def baseline_rates(model, images, labels, cfg, device, epochs: int, workers: int) -> list[float]:
    """images/s per epoch of the examples' loop (same optimiser kind, not fused)."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision import transforms

    mean, std = float(images.mean() / 255), float(images.std() / 255)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    loader = DataLoader(PILDigits(images, labels, tf), batch_size=cfg.batch_size, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    model.to(device).train()
    rates = []
    for _ in range(epochs):
        start, n = time.perf_counter(), 0
        for batch, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if batch % 10 == 0:  # the examples log every log_interval=10 batches
                loss.item()
            n += len(y)
        rates.append(n / (time.perf_counter() - start))
    return rates


def fit_rates(model, images, labels, val, cfg, device, epochs: int) -> list[float]:
    """images/s per epoch of fit (its validation pass is over a handful of images)."""
    from synthaug.pipeline.core.device import seed_everything
    from synthaug.pipeline.classifiers.training import fit

    seconds = []
    r = fit(model, (images, labels), val, cfg.model_copy(update={"epochs": epochs}), device,
            seed_everything(0), progress=False,
            on_epoch=lambda row: seconds.append(row["seconds"]))
    assert r.epochs_run == epochs
    return [len(labels) / (b - a) for a, b in zip([0.0, *seconds], seconds)]


def measure(args) -> float:
    """The best epoch's images/s of one way (`args.only`), in this process."""
    import torch

    from synthaug.pipeline.classifiers.classifier import build_classifier
    from synthaug.pipeline.classifiers.config import TrainConfig
    from synthaug.pipeline.core.device import pick_device, seed_everything

    device = pick_device(args.device)
    images, labels = mnist5k()
    n = args.images
    train, val = (images[:n], labels[:n]), (images[n:n + 16], labels[n:n + 16])
    cfg = TrainConfig(model=args.model, batch_size=args.batch_size, epoch_size=0, patience=0,
                      compile=args.compile, cpu_bf16=not args.fp32)
    shape = (images.shape[3], images.shape[1], images.shape[2])

    def fresh():
        seed_everything(0)
        return build_classifier(args.model, {}, shape, [str(i) for i in range(10)], train[0], cfg)[0]

    if args.only == "fit":
        run = fit_rates(fresh(), *train, val, cfg, device, args.epochs)
    else:
        run = baseline_rates(fresh(), *train, cfg, device, args.epochs, int(args.only[-1]))
    return max(run[1:])  # the first epoch warms up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="train.compile for fit")
    ap.add_argument("--fp32", action="store_true", help="fit without train.cpu_bf16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=4000, help="MNIST-5k training images (<= 4984)")
    ap.add_argument("--only", choices=["loop0", "loop1", "fit"], help=argparse.SUPPRESS)
    add_tiny(ap)
    args, rest = ap.parse_known_args()
    if args.tiny:  # epoch 1 warms up, epoch 2 is measured
        args.images, args.epochs, args.rounds = 256, 2, 1
    if args.only:
        print(measure(args))
        return
    import subprocess

    import torch

    # each way in a fresh process: a DataLoader's workers leave a process slower after them
    def run(only: str) -> float:
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", only],
                             capture_output=True, text=True, check=True).stdout
        return float(out.strip().splitlines()[-1])

    print(machine())
    print(f"{args.model}, batch {args.batch_size}, {args.images} MNIST-5k images per epoch, "
          f"{args.device}, {torch.get_num_threads()} threads, best epoch of {args.rounds} x "
          f"{args.epochs}", flush=True)
    # the examples use no worker on CPU and one on CUDA: both, and the faster is the baseline
    ways = {"loop0": "DataLoader loop, 0 workers", "loop1": "DataLoader loop, 1 worker",
            "fit": "pipeline.classifiers.training.fit"}
    best = dict.fromkeys(ways, 0.0)
    for r in range(args.rounds):
        got = {way: run(way) for way in ways}
        best = {way: max(best[way], got[way]) for way in ways}
        print(f"round {r + 1}: " + ", ".join(f"{w} {v:.0f}" for w, v in got.items()), flush=True)
    for way, label in ways.items():
        print(f"{label + ':':28s} {best[way]:8.0f} img/s")
    speedup = best["fit"] / max(best["loop0"], best["loop1"])
    ratio(f"{speedup:.2f}x the faster DataLoader loop: fit's best epoch img/s (bar: >= 3x on CPU"
          f"{'; not checked with --tiny' if args.tiny else ''})")


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    main()
