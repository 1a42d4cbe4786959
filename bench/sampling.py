"""bench/sampling: generator sampling images/s, batched (`generators.common.sample_images`, as
`synthaug sample` draws) against a one-image-per-call loop, for each generator family at the
params.yaml settings (weights fresh: the speed does not depend on them), in one run.

    .venv/bin/python bench/sampling.py [--images 500] [--batch-size 500] [--device auto]
        [--families gan vae diffusion]

Prints per family: batched img/s, per-image img/s, and their ratio. Each figure is the best of
two runs (the first call of each warms up).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from augment import best_rate  # noqa: E402  (bench/ is the script's own folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--baseline-images", type=int, default=20, help="for the per-image loop")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--families", nargs="+", default=["gan", "vae", "diffusion"])
    args = ap.parse_args()
    import numpy as np
    import torch

    from synthaug.generators.common import build_generator, sample_images
    from synthaug.stages.params import load_params
    from synthaug.pipeline.core.device import pick_device

    device = pick_device(args.device)
    p = load_params(Path(__file__).resolve().parent.parent / "params.yaml", [])
    names = [str(i) for i in range(10)]
    print(f"{device}, {torch.get_num_threads()} threads, {args.images} images (batch "
          f"{args.batch_size}) vs {args.baseline_images} one at a time", flush=True)
    for family in args.families:
        torch.manual_seed(0)
        model = build_generator(family, p.train_generator.family(family), (1, 28, 28), names)
        model = model.to(device).to(memory_format=torch.channels_last).eval()  # as loaded
        labels = np.arange(args.images) % 10
        gen = lambda: torch.Generator(device).manual_seed(0)  # noqa: E731
        sample_images(model, labels[:10], gen(), args.batch_size)  # warm-up
        batched = best_rate(lambda: sample_images(model, labels, gen(), args.batch_size),
                            args.images, 2)
        few = labels[:args.baseline_images]
        single = best_rate(lambda: sample_images(model, few, gen(), 1), len(few), 2)
        print(f"{family:9s} batched {batched:9.0f} img/s   one per call {single:8.0f} img/s   "
              f"ratio {batched / single:6.1f}x", flush=True)


if __name__ == "__main__":
    main()
