"""How recognisable are a generator's samples? Score them with a classifier trained on real data.

For each generator folder under --generators, draw --per-class samples of every class and
report the fraction a real-trained classifier assigns to the label asked for (the issue's
bar on the CPU defaults: best >= 80%, every one >= 50%), per class too, with training seconds
from the generator's metrics when they are there. Run it where `dvc repro` (or
`synthaug prepare`, `synthaug train`, `synthaug train-generator ...`) ran:

    .venv/bin/python bench/generator_quality.py --classifier models/classifiers/real/cnn/seed0
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classifier", type=Path, required=True, help="a classifier model folder")
    ap.add_argument("--generators", type=Path, default=Path("models/generators"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/generators"))
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    import numpy as np
    import torch

    from generators.common import load_generator, sample_images
    from pipeline.classifier import load_classifier
    from pipeline.training import predict

    device = torch.device("cpu")
    classifier, _ = load_classifier(args.classifier, device)
    results = {}
    for folder in sorted(p for p in args.generators.iterdir() if (p / "config.json").is_file()):
        model, config = load_generator(folder, device)
        k = len(config["class_names"])
        labels = np.repeat(np.arange(k), args.per_class)
        start = time.perf_counter()
        images = sample_images(model, labels, torch.Generator().manual_seed(args.seed))
        seconds = time.perf_counter() - start
        pred = predict(classifier, images, device).argmax(1).numpy()
        per_class = [float((pred[labels == c] == c).mean()) for c in range(k)]
        metrics = args.metrics / folder.name / "metrics.json"
        train_s = json.loads(metrics.read_text()).get("train_seconds") if metrics.is_file() else None
        results[folder.name] = {"accuracy": float((pred == labels).mean()), "per_class": per_class,
                                "samples": len(labels), "sample_seconds": seconds,
                                "train_seconds": train_s}
    print(f"{'generator':<10} {'accuracy':>8} {'worst class':>12} {'train s':>8} {'sample s':>9}")
    for name, r in results.items():
        worst = int(np.argmin(r["per_class"]))
        train_s = f"{r['train_seconds']:.0f}" if r["train_seconds"] is not None else "?"
        print(f"{name:<10} {r['accuracy']:8.3f} {worst:>5} {min(r['per_class']):6.3f} "
              f"{train_s:>8} {r['sample_seconds']:9.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
