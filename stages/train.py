"""`synthaug train`: fit one classifier on the prepared train split (val for early stopping)."""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from stages.common import (ModelOpt, ParamsOpt, SeedOpt, SetOpt, VariantOpt, params_from, say,
                           study_cell, user_errors)


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            variant: VariantOpt = None, model: ModelOpt = None, seed: SeedOpt = None,
            study_seeds: Annotated[bool, typer.Option(
                "--study-seeds", help="train every seed of study.seeds, one after the other "
                "(what a dvc cell does)")] = False,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True,
            test: Annotated[bool, typer.Option(
                help="then score it on the real test split, as `synthaug evaluate` does")] = True,
            figures: Annotated[bool, typer.Option(
                help="learning-curve and confusion PNGs (dvc plots draws both from the data)")] = True,
            ) -> None:
    """Train one study cell: `--model` on variant `--variant`'s training set with `--seed`
    (or every seed of `study.seeds`), then test it on the held-out real test split.

    Reads `paths.variants`/VARIANT (made by `synthaug compose`) and selects the best epoch on
    `paths.prepared`/val. When the variant (or `train.online_augment`) asks for on-the-fly
    augmentation, every epoch sees freshly augmented copies. Per seed it writes the model folder
    `paths.models`/VARIANT/MODEL/seedN (config.json + weights.safetensors, loadable without
    params.yaml), dvclive metrics and plots to `paths.train_metrics`/VARIANT/MODEL/seedN and the
    test scores where `synthaug evaluate` puts them (`paths.evaluate_metrics`/VARIANT/MODEL/seedN);
    with --study-seeds also `paths.evaluate_metrics`/VARIANT/MODEL.json, every seed's test
    scores in one row for `dvc metrics show`.

    Data parallel on several GPUs or processes: `torchrun --nproc_per_node N -m stages train
    ...`; the ranks split every batch, average the gradients and rank 0 writes.

    The recipe is the `train` section with `train.per_model.MODEL` on top. Training and
    testing every seed in one process saves ~8 s per run (importing torch, and torch._dynamo
    that torch.optim loads) over one process per step.
    """
    p = params_from(params, set_)
    if study_seeds and seed is not None:
        from pipeline.core.errors import SynthaugError

        raise SynthaugError("--seed and --study-seeds: give one of them")
    from pipeline.core.distributed import from_env

    dist = from_env()  # under torchrun: this process's rank; else a single process
    seeds = list(p.study.seeds) if study_seeds else [seed]
    summary = {}
    for s in seeds:
        cell, scores = _train_one(p.model_copy(deep=True), variant, model, s, progress, test,
                                  figures, dist)
        summary[f"seed{cell[2]}"] = scores
    if study_seeds and test and dist.main:
        # every seed's test scores in one row of `dvc metrics show` (the report adds the CIs)
        name, mdl = cell[0], cell[1]
        out = p.paths.evaluate_metrics / name / f"{mdl}.json"
        mean = sum(row["accuracy"] for row in summary.values()) / len(summary)
        from pipeline.data.storage import atomic_output

        with atomic_output(out, is_dir=False) as f:
            f.write_text(json.dumps({"accuracy_mean": mean, **summary}, indent=2) + "\n")
        say(f"{name} / {mdl}: mean test accuracy {100 * mean:.1f}% over {len(summary)} "
            f"seed(s) -> {out}")


def _train_one(p, variant, model, seed, progress: bool, test: bool,
               figures: bool, dist) -> tuple[tuple, dict]:
    """Train (and test) one seed; returns the cell (variant, model, seed) and its test
    scores (empty without test)."""
    variant, _, _, run = study_cell(p, variant, model, seed)
    import torch
    from dvclive import Live

    from pipeline.classifiers.classifier import build_classifier, save_classifier
    from pipeline.core.device import pick_device, seed_everything
    from pipeline.classifiers.metrics import score, write_evaluation
    from pipeline.classifiers.layers import count_params
    from pipeline.data.storage import read_dataset
    from stages.common import output

    cfg = p.train
    from pipeline.core.errors import SynthaugError
    from pipeline.data.storage import is_dataset

    train_dir = p.paths.variants / variant
    if not is_dataset(train_dir):
        raise SynthaugError(f"{train_dir}: no training set for variant {variant!r}; run "
                            "`synthaug compose` (or `dvc repro`) first")
    train = read_dataset(train_dir)  # memory-mapped: `fit` loads it or reads it per batch (train.load)
    online = train.meta.get("online_augment") or cfg.online_augment
    val = read_dataset(p.paths.prepared / "val", mmap=False)
    device = dist.device(pick_device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    generator = seed_everything(cfg.seed, deterministic=device.type == "cpu")
    model, architecture = build_classifier(cfg.model, p.models, train.shape, train.class_names,
                                           train.images, cfg)
    total, _ = count_params(model)
    augment = None
    if online is not None:
        from pipeline.augment.expand import OnlineAugment

        augment = OnlineAugment(train.images, train.labels, online, cfg.seed, cfg.workers)
    say(f"train {cfg.model} on {variant} (seed {cfg.seed}): {total:,} parameters, {len(train)} "
        f"train / {len(val)} val images of {'x'.join(map(str, train.shape))}, "
        f"{len(train.class_names)} classes, on {device}"
        + (f"; online augmentation {online if isinstance(online, str) else 'custom'} on "
           f"{augment.workers or 'the main'} worker process(es)" if augment else ""))

    from pipeline.classifiers.training import fit

    model_out, log_out = p.paths.models / run, p.paths.train_metrics / run
    test_out = p.paths.evaluate_metrics / run
    test_split = read_dataset(p.paths.prepared / "test", mmap=False) if test else None
    # under torchrun only rank 0 writes; the other ranks write into scratch folders
    with output(model_out, dist) as model_dir, output(log_out, dist) as log_dir, \
            (output(test_out, dist) if test else nullcontext()) as test_dir:
        live = Live(dir=str(log_dir), dvcyaml=False, save_dvc_exp=False)
        live.log_params({"variant": variant, "model": cfg.model, "parameters": total,
                         **cfg.model_dump(mode="json"), "online_augment": online})
        if augment is not None:
            from pipeline.augment.expand import expand, preview_pick
            from pipeline.report.figures import augment_grid

            picks = preview_pick(train.labels, 1)[:20]
            ex = expand(train.images[picks], train.labels[picks], online, 6, cfg.seed, workers=1,
                        progress=False)
            augment_grid(train.images[picks], ex.images.reshape(len(picks), 6, *ex.images.shape[1:]),
                         [train.class_names[train.labels[i]] for i in picks],
                         log_dir / "online_augment_preview.png",
                         title=f"{variant}: on-the-fly augmentation, originals (framed) and draws")

        def on_epoch(row: dict) -> None:
            for key, value in row.items():
                if key not in ("epoch", "best", "samples"):
                    live.log_metric(key, value)
            live.next_step()
            say(f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  train acc "
                f"{row['train_accuracy']:.4f}  val loss {row['val_loss']:.4f}  val acc "
                f"{row['val_accuracy']:.4f}  {row['seconds']:6.1f}s{'  *' if row['best'] else ''}")

        result = fit(model, (train.images, train.labels), (val.images, val.labels), cfg, device,
                     generator, on_epoch=on_epoch, progress=progress and dist.main,
                     augment=augment, dist=dist)
        live.summary.update({"variant": variant, "model": cfg.model, "seed": cfg.seed,
                             "best_epoch": result.best_epoch,
                             "best_val_accuracy": result.best_val_accuracy,
                             "epochs_run": result.epochs_run, "train_seconds": result.seconds})
        live.end()
        if figures:
            from pipeline.report.figures import learning_curves

            learning_curves(result.history, log_dir / "learning_curves.png",
                            title=f"{cfg.model} on {variant} ({train.meta.get('source', '?')}), "
                                  f"seed {cfg.seed}",
                            best_epoch=result.best_epoch)
        save_classifier(model_dir, model, {
            **architecture,
            "train": cfg.model_dump(mode="json"),
            "trained_on": {"variant": variant, "content_hash": train.meta.get("content_hash"),
                           "source": train.meta.get("source"), "online_augment": online},
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
        })
        (log_dir / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
        if test:
            m, pred = score(model, test_split, device, p.evaluate.batch_size)
            write_evaluation(test_dir, m, test_split.class_names, test_split.labels, pred,
                             figure=figures, variant=variant, model=cfg.model, seed=cfg.seed)
    say(f"best epoch {result.best_epoch}/{result.epochs_run}: val accuracy "
        f"{result.best_val_accuracy:.4f} ({result.seconds:.1f} s"
        f"{', stopped early' if result.stopped_early else ''}) -> {model_out}")
    cell = (variant, cfg.model, cfg.seed)
    if not test:
        return cell, {}
    say(f"test ({m['num_test']} real images): accuracy {m['accuracy']:.4f}  macro-F1 "
        f"{m['macro_f1']:.4f} -> {test_out}")
    return cell, {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}



