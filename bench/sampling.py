"""bench/sampling: generator sampling images/s, batched (`generators.common.sample_images`, as
`synthaug sample` draws) against a one-image-per-call loop, for each generator family at the
params.yaml settings (weights fresh: the speed does not depend on them), in one run.

    .venv/bin/python bench/sampling.py [--images 200] [--batch-size 500] [--device auto]
        [--families gan vae diffusion]
    .venv/bin/python bench/sampling.py --tiny   # 20 images batched, 2 one at a time, once (CI)

Prints per family: batched img/s, per-image img/s, and their ratio. Each figure is the best of
--repeats runs (the first call of each warms up).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from _common import add_tiny, best_rate, machine, ratio  # bench/: the script's own folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--baseline-images", type=int, default=20, help="for the per-image loop")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--families", nargs="+", default=["gan", "vae", "diffusion"])
    ap.add_argument("--repeats", type=int, default=2)
    add_tiny(ap)
    args = ap.parse_args()
    if args.tiny:
        args.images, args.baseline_images, args.batch_size, args.repeats = 20, 2, 20, 1
    import numpy as np
    import torch

    from synthaug.generators.common import build_generator, sample_images
    from synthaug.stages.params import load_params
    from synthaug.pipeline.core.device import pick_device

    device = pick_device(args.device)
    p = load_params(Path(__file__).resolve().parent.parent / "params.yaml", [])
    names = [str(i) for i in range(10)]
    print(machine())
    print(f"{device}, {torch.get_num_threads()} threads, {args.images} images (batch "
          f"{args.batch_size}) vs {args.baseline_images} one at a time", flush=True)
    ratios = []
    for family in args.families:
        torch.manual_seed(0)
        model = build_generator(family, p.train_generator.family(family), (1, 28, 28), names)
        model = model.to(device).to(memory_format=torch.channels_last).eval()  # as loaded
        labels = np.arange(args.images) % 10
        gen = lambda: torch.Generator(device).manual_seed(0)  # noqa: E731
        sample_images(model, labels[:10], gen(), args.batch_size)  # warm-up
        batched = best_rate(lambda: sample_images(model, labels, gen(), args.batch_size),
                            args.images, args.repeats)
        few = labels[:args.baseline_images]
        single = best_rate(lambda: sample_images(model, few, gen(), 1), len(few), args.repeats)
        print(f"{family:9s} batched {batched:9.0f} img/s   one per call {single:8.0f} img/s   "
              f"batched / one {batched / single:6.1f}x", flush=True)
        ratios.append(f"{family} {batched / single:.1f}x")
    ratio(f"batched / one image per call: {', '.join(ratios)}")


if __name__ == "__main__":
    main()
