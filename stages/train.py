"""`synthaug train`: fit one classifier on the prepared train split (val for early stopping)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOpt, SetOpt, params_from, say, user_errors


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True) -> None:
    """Train `train.model` on `paths.prepared`/train, select the best epoch on val.

    Writes the model folder `paths.model` (config.json + weights.safetensors, loadable without
    params.yaml) and dvclive metrics, plots and learning curves to `paths.train_metrics`.
    """
    p = params_from(params, set_)
    import torch
    from dvclive import Live

    from pipeline.classifier import channel_stats, make_classifier, save_classifier
    from pipeline.device import pick_device, seed_everything
    from pipeline.figures import learning_curves
    from pipeline.models import count_params, resolve_layers
    from pipeline.storage import atomic_output, read_dataset

    cfg = p.train
    train = read_dataset(p.paths.prepared / "train", mmap=False)
    val = read_dataset(p.paths.prepared / "val", mmap=False)
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    generator = seed_everything(cfg.seed, deterministic=device.type == "cpu")
    layers = resolve_layers(cfg.model, p.models, train.shape)
    model = make_classifier(layers, train.shape, len(train.class_names), *channel_stats(train.images))
    total, _ = count_params(model)
    say(f"train {cfg.model}: {total:,} parameters, {len(train)} train / {len(val)} val images "
        f"of {'x'.join(map(str, train.shape))}, {len(train.class_names)} classes, on {device}")

    from pipeline.training import fit

    with atomic_output(p.paths.model) as model_dir, atomic_output(p.paths.train_metrics) as log_dir:
        live = Live(dir=str(log_dir), dvcyaml=False, save_dvc_exp=False)
        live.log_params({"model": cfg.model, "parameters": total, **cfg.model_dump(mode="json")})

        def on_epoch(row: dict) -> None:
            for key, value in row.items():
                if key not in ("epoch", "best"):
                    live.log_metric(key, value)
            live.next_step()
            say(f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  train acc "
                f"{row['train_accuracy']:.4f}  val loss {row['val_loss']:.4f}  val acc "
                f"{row['val_accuracy']:.4f}  {row['seconds']:6.1f}s{'  *' if row['best'] else ''}")

        result = fit(model, (train.images, train.labels), (val.images, val.labels), cfg, device,
                     generator, on_epoch=on_epoch, progress=progress)
        live.summary.update({"best_epoch": result.best_epoch,
                             "best_val_accuracy": result.best_val_accuracy,
                             "epochs_run": result.epochs_run, "train_seconds": result.seconds})
        live.end()
        learning_curves(result.history, log_dir / "learning_curves.png",
                        title=f"{cfg.model} on {train.meta.get('source', '?')}",
                        best_epoch=result.best_epoch)
        save_classifier(model_dir, model, {
            "model": cfg.model,
            "layers": [layer.model_dump(mode="json") for layer in layers],
            "shape": list(train.shape),
            "class_names": train.class_names,
            "train": cfg.model_dump(mode="json"),
            "trained_on": {"content_hash": train.meta.get("content_hash"),
                           "source": train.meta.get("source")},
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
        })
        (log_dir / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
    say(f"best epoch {result.best_epoch}/{result.epochs_run}: val accuracy "
        f"{result.best_val_accuracy:.4f} ({result.seconds:.1f} s"
        f"{', stopped early' if result.stopped_early else ''}) -> {p.paths.model}")
