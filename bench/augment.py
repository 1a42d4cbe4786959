"""bench/augment: images/s of the augment stage vs a bare albumentations loop vs
torchvision.transforms.v2, on the same MNIST-5k images in one run, printed as ratios.

    .venv/bin/python bench/augment.py [--images 2000] [--copies 4] [--preset medium] [--repeats 3]
    .venv/bin/python bench/augment.py --tiny   # 64 images, 2 copies, each way once (CI)

Bars (issue 3): stage on 1 process within 10% of the bare loop (ratio >= 0.90); stage on 2
processes >= 1.6x the bare loop. Each figure is the best of --repeats runs.

Also timed (issue 7): pipeline.augment.batch's BatchAugment preset of the same name (no elastic
step) on whole batches of --batch images, uint8 -> float included, on the CPU with 1 thread
and with every core, and on CUDA when there is one (synchronised before the clock stops).
"""
from __future__ import annotations

import argparse
import os

from _common import add_tiny, best_rate, machine, ratio

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def torchvision_medium():
    """The closest torchvision.transforms.v2 pipeline to the `medium` preset (1 channel)."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomApply([v2.RandomAffine(degrees=12, translate=(0.08, 0.08), scale=(0.9, 1.1),
                                        shear=8)], p=0.9),
        v2.RandomApply([v2.ElasticTransform(alpha=20.0, sigma=4.0)], p=0.3),
        v2.RandomApply([v2.ToDtype(__import__("torch").float32, scale=True),
                        v2.GaussianNoise(sigma=0.05), v2.ToDtype(__import__("torch").uint8, scale=True)],
                       p=0.3),
        v2.RandomApply([v2.ColorJitter(brightness=0.2, contrast=0.2)], p=0.5),
        v2.RandomErasing(p=0.3, scale=(0.01, 0.06), value=0),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=512)  # BatchAugment batch size
    add_tiny(ap)
    args = ap.parse_args()
    if args.tiny:  # two of expand's chunks, so that 2 processes each get one
        from synthaug.pipeline.augment.expand import CHUNK

        args.images, args.copies, args.repeats, args.batch = 2 * CHUNK, 2, 1, 64

    import albumentations as A
    import torch

    from synthaug.pipeline.augment.classic import build_augmenter
    from synthaug.pipeline.data.config import PrepareConfig
    from synthaug.pipeline.augment.expand import expand
    from synthaug.pipeline.core.pool import usable_cores
    from synthaug.pipeline.data.sources import load_source

    cpu_count = usable_cores
    src = load_source(PrepareConfig(), "data/raw", progress=False)
    images, labels = src.images[:args.images], src.labels[:args.images]
    n = len(images) * args.copies
    shape = (images.shape[3], images.shape[1], images.shape[2])
    torch.set_num_threads(1)

    # the baseline: the same albumentations transforms, one Compose, a plain loop
    compose = A.Compose(next(obj for kind, obj in build_augmenter(args.preset, shape).steps
                             if kind == "albumentations").transforms, seed=0)

    def bare():
        for im in images:
            for _ in range(args.copies):
                compose(image=im)

    tv = torchvision_medium()
    timgs = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    def torchvision_loop():
        for im in timgs:
            for _ in range(args.copies):
                tv(im)

    from synthaug.pipeline.augment.batch import BatchAugment
    from synthaug.pipeline.augment.config import BATCH_PRESETS

    batch_aug = BatchAugment(args.preset) if args.preset in BATCH_PRESETS else None

    def batched(device, threads):
        x8 = timgs.to(device)
        gen = torch.Generator(device).manual_seed(0)

        def run():
            torch.set_num_threads(threads)
            for _ in range(args.copies):
                for i in range(0, len(x8), args.batch):
                    batch_aug(x8[i:i + args.batch].float().div_(255), gen)
            if device == "cuda":
                torch.cuda.synchronize()
            torch.set_num_threads(1)
        return run

    def stage(workers):
        return lambda: expand(images, labels, args.preset, args.copies, 0, workers=workers,
                              progress=False)

    print(machine())
    print(f"{len(images)} MNIST-5k images x {args.copies} copies ({n} images), preset "
          f"{args.preset}, {cpu_count()} cores, best of {args.repeats}")
    rates = {"bare albumentations loop (1 process)": best_rate(bare, n, args.repeats)}
    rates["torchvision.transforms.v2 loop (1 process)"] = best_rate(torchvision_loop, n, args.repeats)
    rates["augment stage, 1 process"] = best_rate(stage(1), n, args.repeats)
    rates["augment stage, 2 processes"] = best_rate(stage(2), n, args.repeats)
    if cpu_count() > 2:
        rates[f"augment stage, {cpu_count()} processes"] = best_rate(stage(0), n, args.repeats)
    where = f"BatchAugment {args.preset}, batch {args.batch}"
    if batch_aug is not None:  # light / medium / heavy only
        rates[f"{where}, CPU 1 thread"] = best_rate(batched("cpu", 1), n, args.repeats)
    if batch_aug is not None and cpu_count() > 1:
        rates[f"{where}, CPU {cpu_count()} threads"] = best_rate(batched("cpu", cpu_count()), n,
                                                                args.repeats)
    if batch_aug is not None and torch.cuda.is_available():
        batched("cuda", 1)()  # warm-up: CUDA context and kernels
        rates[f"{where}, CUDA"] = best_rate(batched("cuda", 1), n, args.repeats)
    base = rates["bare albumentations loop (1 process)"]
    width = max(map(len, rates))
    print(f"{'':{width}}  {'img/s':>8}  vs bare loop")
    for name, rate in rates.items():
        print(f"{name:{width}}  {rate:8,.0f}  {rate / base:5.2f}x")
    one, two = rates["augment stage, 1 process"] / base, rates["augment stage, 2 processes"] / base
    def verdict(ok: bool) -> str:
        return "not checked (--tiny)" if args.tiny else "PASS" if ok else "FAIL"

    print(f"bar: stage overhead on 1 process <= 10% (ratio >= 0.90): {one:.2f} "
          f"{verdict(one >= 0.90)}")
    print(f"bar: stage on 2 processes >= 1.6x the bare loop: {two:.2f} {verdict(two >= 1.6)}")
    ratio(f"{two:.2f}x the bare albumentations loop: augment stage on 2 processes "
          f"({one:.2f}x on 1 process)")


if __name__ == "__main__":
    main()
