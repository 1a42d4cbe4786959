"""`synthaug judge`: the real-trained classifier that synthetic data is scored and gated by."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import (ParamsOpt, SetOpt, params_from, params_unchanged, say,
                                    user_errors)


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True) -> None:
    """Train the judge: `quality.model` on the real train split (model selection on val).

    It uses the default training recipe (the `train` section's defaults, not its current
    values, so tuning `train` does not invalidate the quality scores) with `quality.model`,
    `quality.epochs` and `quality.seed`: the same recipe `synthaug quality` trains on every synthetic set for CAS,
    so the judge's test accuracy is the real reference CAS is compared with. Its penultimate
    layer is the feature space of FID-domain, KID and precision/recall; its confidence drives
    the quality gate of `synthaug compose`.

    Writes paths.judge (a classifier folder, loadable without params.yaml) with
    judge.json (val and test accuracy).

    **Examples**

    ```
    synthaug judge
    synthaug judge -S quality.model=lenet5 -S quality.epochs=8
    ```
    """
    p = params_from(params, set_)
    from synthaug.pipeline.classifiers.classifier import save_classifier
    from synthaug.pipeline.classifiers.config import TrainConfig
    from synthaug.pipeline.core.device import pick_device
    from synthaug.pipeline.quality.assess import judge_recipe
    from synthaug.pipeline.quality.usefulness import test_accuracy
    from synthaug.pipeline.classifiers.trainer import train_classifier
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.data.storage import read_dataset

    train, val, test = (read_dataset(p.paths.prepared / s, mmap=False) for s in ("train", "val", "test"))
    device = pick_device(p.quality.device)
    cfg = judge_recipe(TrainConfig(), p.quality)
    model, architecture, result = train_classifier(
        train.images, train.labels, (val.images, val.labels), train.class_names, cfg, p.models,
        device, progress=progress)
    acc = test_accuracy(model, test.images, test.labels, device)
    summary = {"model": cfg.model, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
               "val_accuracy": result.best_val_accuracy, "test_accuracy": acc,
               "train_seconds": result.seconds, "trained_on": train.meta.get("content_hash")}
    with atomic_output(p.paths.judge) as tmp:
        save_classifier(tmp, model, {**architecture, "train": cfg.model_dump(mode="json"),
                                     "judge": summary})
        (tmp / "judge.json").write_text(json.dumps(summary, indent=2) + "\n")
        params_unchanged()  # params.yaml edited meanwhile: not committed
    say(f"judge {cfg.model}: val accuracy {result.best_val_accuracy:.4f}, test accuracy {acc:.4f} "
        f"({result.seconds:.1f} s) -> {p.paths.judge}")
