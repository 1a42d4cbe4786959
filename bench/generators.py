"""bench/generators: what each generator family's step budget buys, to choose defaults from.

Per family, at the params.yaml budget (x1) and at twice it (x2, or the --budgets given): train
the generator in this process (as `synthaug train-generator` does), draw the prior set (as
`synthaug sample` does) and score it (as `synthaug quality` does) against the real train split
with the judge. Prints per run: seconds per 1,000 steps, training and sampling seconds, CAS /
real, coverage, recall, precision, density and judge agreement, so that a default is chosen
from the trade-off, with the machine named.

CAS here is scored on the real VAL split (a classifier trained on the synthetic set alone,
model selection on the real train split, divided by the judge's val accuracy): choosing
defaults never looks at the test split. `synthaug quality` reports the test-split CAS.
Run it where `synthaug prepare` and `synthaug judge` (or `dvc repro`) ran:

    .venv/bin/python bench/generators.py [--families gan vae diffusion] [--budgets 1 2]
        [-S train_generator.gan.width=16 ...] [--seed 0] [--threads N] [--json out.json]
        [--grids DIR]
    .venv/bin/python bench/generators.py --tiny   # anywhere: 5-step generators (CI)

--tiny needs no earlier run: it prepares 10 MNIST-5k images per class and trains a one-epoch
lenet5 judge with the stages themselves (`synthaug prepare` and `synthaug judge`, into a temporary
folder), then runs the same loop on 5-step generators (budgets 1 and 2).
The closing line (`ratio ...`) gives, per family, the last budget against the first: training
seconds and CAS / real.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import add_tiny, machine, ratio

ROOT = Path(__file__).resolve().parent.parent
TINY = ["prepare.train_per_class=10", "quality.model=lenet5", "quality.epochs=1", "quality.k=3",
        "quality.kid_subset_size=20", "train_generator.log_every=5",
        "train_generator.checkpoint_every=50", "train_generator.grid_every=0",
        "train_generator.gan.steps=5", "train_generator.vae.steps=5",
        "train_generator.diffusion.steps=5", "train_generator.diffusion.autoencoder_steps=5",
        "train_generator.diffusion.sample_steps=2", "sample.per_class=5"]


def tiny_inputs(params: Path, overrides: list[str], root: Path) -> list[str]:
    """The prepared splits and the judge under `root`, made by the stages on tiny settings;
    the overrides that point the bench at them."""
    from synthaug.stages import judge, prepare

    overrides = [*overrides, f"paths.prepared={root / 'prepared'}", f"paths.judge={root / 'judge'}"]
    prepare.command(params=params, set_=overrides)
    judge.command(params=params, set_=overrides, progress=False)
    return overrides


def run(family: str, budget: float, p, data: dict, ctx, seed: int, device) -> dict:
    import torch

    from synthaug.generators.common import build_generator
    from synthaug.generators.config import SetConfig
    from synthaug.generators.samplers import build_sampler
    from synthaug.generators.training import GeneratorTrainer
    from synthaug.pipeline.core.device import seed_everything
    from synthaug.pipeline.data.compose import balanced_labels
    from synthaug.pipeline.quality.assess import assess

    cfg = p.train_generator.model_copy(deep=True)
    cfg.seed = seed
    fcfg = cfg.family(family)
    fcfg.steps = max(1, round(fcfg.steps * budget))
    if family == "diffusion":
        fcfg.autoencoder_steps = round(fcfg.autoencoder_steps * budget)
    train, val = data["train"], data["val"]
    rng = seed_everything(seed, deterministic=True)
    model = build_generator(family, fcfg, train.shape, train.class_names)
    trainer = GeneratorTrainer(model, cfg, (train.images, train.labels), (val.images, val.labels),
                               device, rng)
    while not trainer.done:
        trainer.train_steps(cfg.log_every)
    start = time.perf_counter()
    labels = balanced_labels(len(train.class_names), p.sample.per_class)
    sampler = build_sampler(trainer.ema, SetConfig(generator=family)).fit(train.images, train.labels)
    images, _ = sampler.sample(labels, torch.Generator().manual_seed(seed), p.sample.batch_size)
    sample_s = time.perf_counter() - start
    row = assess(f"{family}-prior", images, labels, ctx, (train.images, train.labels))
    return {"family": family, "budget": budget, "steps": trainer.step,
            "ms_per_step": 1000 * trainer.seconds / max(1, trainer.step),
            "train_seconds": trainer.seconds, "sample_seconds": sample_s,
            "cas_ratio": row["cas_ratio"], "coverage": row["coverage"], "recall": row["recall"],
            "precision": row["precision"], "density": row["density"],
            "judge": row["judge_accuracy"], "failing": row["failing_classes"],
            "near_copies": row["near_copy_fraction"]}, images, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["gan", "vae", "diffusion"])
    ap.add_argument("--budgets", nargs="+", type=float, default=[1.0, 2.0],
                    help="multiples of each family's steps (and autoencoder_steps)")
    ap.add_argument("-S", "--set", dest="overrides", action="append", default=[],
                    metavar="SECTION.KEY=VALUE", help="params override, as `synthaug -S`")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--seed", type=int, default=0, help="train_generator.seed for every run")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (1: a study worker's); 0 = torch's default")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--grids", type=Path, help="write each run's sample grid (PNG) here")
    add_tiny(ap)
    args = ap.parse_args()
    if args.tiny:
        args.budgets = [1.0, 2.0]
        with tempfile.TemporaryDirectory(prefix="bench-generators-") as tmp:
            args.overrides = tiny_inputs(args.params, [*TINY, *args.overrides], Path(tmp))
            bench(args)
    else:
        bench(args)


def bench(args) -> None:

    import torch

    from synthaug.pipeline.classifiers.classifier import load_classifier
    from synthaug.pipeline.classifiers.config import TrainConfig
    from synthaug.stages.params import load_params
    from synthaug.pipeline.figures.data import sample_grid
    from synthaug.pipeline.quality.assess import QualityContext, judge_recipe
    from synthaug.pipeline.data.storage import read_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    p = load_params(args.params, args.overrides)
    device = torch.device("cpu")
    data = {s: read_dataset(p.paths.prepared / s, mmap=False) for s in ("train", "val")}
    judge, _ = load_classifier(p.paths.judge, device)
    q = p.quality.model_copy(update={"imagenet_features": False})
    # scored on val: the CAS classifier selects on train, the judge's val accuracy is "real"
    ctx = QualityContext.build(data["train"], data["train"], data["val"], judge, q,
                               judge_recipe(TrainConfig(), q), p.models, device)
    print(machine())
    print(f"# CAS on the val split; overrides: {' '.join(args.overrides) or 'none'}",
          flush=True)
    head = (f"{'family':<10} {'budget':>6} {'steps':>6} {'ms/step':>8} {'s/1k':>6} {'train s':>8} "
            f"{'sample s':>8} {'CAS/real':>8} {'cover':>6} {'recall':>6} {'prec':>6} "
            f"{'dens':>6} {'judge':>6}  failing")
    print(head, flush=True)
    rows = []
    for family in args.families:
        for budget in args.budgets:
            r, images, labels = run(family, budget, p, data, ctx, args.seed, device)
            rows.append(r)
            if args.grids:
                args.grids.mkdir(parents=True, exist_ok=True)
                sample_grid(images, labels, data["train"].class_names,
                            args.grids / f"{family}_x{budget:g}_seed{args.seed}.png",
                            title=f"{family} x{budget:g} ({r['steps']} steps), seed {args.seed}")
            print(f"{family:<10} {budget:>5g}x {r['steps']:>6} {r['ms_per_step']:>8.1f} "
                  f"{r['ms_per_step']:>6.0f} {r['train_seconds']:>8.1f} {r['sample_seconds']:>8.1f} "
                  f"{r['cas_ratio']:>8.2f} {r['coverage']:>6.2f} {r['recall']:>6.2f} "
                  f"{r['precision']:>6.2f} {r['density']:>6.2f} {r['judge']:>6.1%}  "
                  f"{', '.join(r['failing']) or '-'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1) + "\n")
    first, last = args.budgets[0], args.budgets[-1]
    parts = []
    for family in args.families:
        a, b = ({r["budget"]: r for r in rows if r["family"] == family}[x] for x in (first, last))
        parts.append(f"{family} train s {b['train_seconds'] / a['train_seconds']:.2f}x, "
                     f"CAS/real {b['cas_ratio'] / a['cas_ratio']:.2f}x" if a["cas_ratio"] else
                     f"{family} train s {b['train_seconds'] / a['train_seconds']:.2f}x")
    ratio(f"budget x{last:g} / x{first:g}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
