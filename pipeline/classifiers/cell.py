"""One study cell's training run end to end: a classifier for a variant's training set (model
selection on the real val split), its dvclive log and learning curves, the saved model folder,
and its score on the real test split.

The caller passes the data, the recipe (`config.recipe`), the device and the output folders
(under torchrun, the other ranks pass scratch folders nobody keeps); the training itself is
`trainer.Training`, the one way every classifier is trained (it seeds from the recipe).
Library code: nothing is printed; `epoch_line`, `fit_line` and `test_line` word the progress.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.classifiers.trainer import Training
from synthaug.pipeline.classifiers.training import FitResult
from synthaug.pipeline.classifiers.use import Use
from synthaug.pipeline.core.batches import precision_note
from synthaug.pipeline.core.distributed import SINGLE, Dist
from synthaug.pipeline.data.storage import PackedDataset

PREVIEW_IMAGES, PREVIEW_DRAWS = 20, 6  # the on-the-fly augmentation preview: originals x draws


class Cell:
    """A classifier about to train on `train`, the packed training set of `variant`."""

    def __init__(self, variant: str, train: PackedDataset, cfg: TrainConfig, custom_models: dict,
                 device: torch.device):
        from synthaug.pipeline.classifiers.layers import count_params

        self.variant, self.train, self.cfg, self.device = variant, train, cfg, device
        use = Use.of(train.meta, train.manifest, f"variant {variant}")  # None: plain mixing
        # a variant that asks for on-the-fly augmentation gets it, else train.online_augment
        self.training = Training(train.images, train.labels, train.class_names, cfg,
                                 custom_models, device, use, train.meta.get("online_augment"))
        self.model, self.architecture = self.training.model, self.training.architecture
        self.online, self.augment = self.training.online, self.training.augment
        self.parameters = count_params(self.model)[0]

    def describe(self, val_size: int) -> str:
        t, cfg = self.train, self.cfg
        text = (f"train {cfg.model} on {self.variant} (seed {cfg.seed}): {self.parameters:,} "
                f"parameters, {len(t)} train / {val_size} val images of "
                f"{'x'.join(map(str, t.shape))}, {len(t.class_names)} classes, on {self.device}; "
                f"{precision_note(self.device, cfg.amp, cfg.cpu_bf16)}")
        if self.augment is not None:
            kind = self.online if isinstance(self.online, str) else "custom"
            text += (f"; online augmentation {kind} on {self.augment.workers or 'the main'} "
                     "worker process(es)")
        return text

    def _preview(self, log_dir: Path) -> None:
        """originals (framed) and draws of the on-the-fly augmentation, before training."""
        from synthaug.pipeline.augment.expand import expand, preview_pick
        from synthaug.pipeline.figures.data import augment_grid

        t = self.train
        picks = preview_pick(t.labels, 1)[:PREVIEW_IMAGES]
        ex = expand(t.images[picks], t.labels[picks], self.online, PREVIEW_DRAWS, self.cfg.seed,
                    workers=1, progress=False)
        augment_grid(t.images[picks], ex.images.reshape(len(picks), PREVIEW_DRAWS, *ex.images.shape[1:]),
                     [t.class_names[t.labels[i]] for i in picks], log_dir / "online_augment_preview.png",
                     title=f"{self.variant}: on-the-fly augmentation, originals (framed) and draws")

    def run(self, val: PackedDataset, test: PackedDataset | None, model_dir: Path, log_dir: Path,
            test_dir: Path | None, *,
            figures: bool = True, progress: bool = True, dist: Dist = SINGLE,
            on_epoch: Callable[[dict], None] | None = None,
            batch_size: int = 512) -> tuple[FitResult, dict | None]:
        """Fit, log (dvclive into `log_dir`, with history.json and, with `figures`, the
        learning curves), save the model into `model_dir` and, given `test`, write its scores
        into `test_dir` (as `synthaug evaluate` does). Returns (fit, test metrics or None)."""
        from dvclive import Live

        from synthaug.pipeline.classifiers.classifier import save_classifier
        from synthaug.pipeline.classifiers.metrics import score, write_evaluation
        from synthaug.pipeline.classifiers.runs import make_run_id

        cfg, t = self.cfg, self.train
        live = Live(dir=str(log_dir), dvcyaml=False, save_dvc_exp=False)
        live.log_params({"variant": self.variant, "model": cfg.model, "parameters": self.parameters,
                         **cfg.model_dump(mode="json"), "online_augment": self.online,
                         "use": t.meta.get("use")})
        if self.augment is not None:
            self._preview(log_dir)

        def logged(row: dict) -> None:
            for key, value in row.items():
                if key not in ("epoch", "best", "samples", "phase"):
                    live.log_metric(key, value)
            live.next_step()
            if on_epoch is not None:
                on_epoch(row)

        result = self.training.fit((val.images, val.labels), progress, logged, dist)
        # one id in the model's config, the log's summary and the test metrics: readers
        # refuse a cell whose three folders come from different runs (pipeline.classifiers.runs)
        self.run_id = make_run_id(self.model.state_dict(), {
            "variant": self.variant, "train": cfg.model_dump(mode="json"),
            "content_hash": t.meta.get("content_hash")})
        live.summary.update({"run_id": self.run_id, "variant": self.variant, "model": cfg.model,
                             "seed": cfg.seed,
                             "best_epoch": result.best_epoch,
                             "best_val_accuracy": result.best_val_accuracy,
                             "epochs_run": result.epochs_run, "train_seconds": result.seconds})
        live.end()
        if figures:
            from synthaug.pipeline.figures.results import learning_curves

            learning_curves(result.history, log_dir / "learning_curves.png",
                            title=f"{cfg.model} on {self.variant} ({t.meta.get('source', '?')}), "
                                  f"seed {cfg.seed}", best_epoch=result.best_epoch)
        save_classifier(model_dir, self.model, {
            "run_id": self.run_id,
            **self.architecture,
            "train": cfg.model_dump(mode="json"),
            "trained_on": {"variant": self.variant, "content_hash": t.meta.get("content_hash"),
                           "source": t.meta.get("source"), "online_augment": self.online,
                           **({"use": t.meta["use"]} if "use" in t.meta else {})},
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
        })
        (log_dir / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
        if test is None:
            return result, None
        m, pred = score(self.model, test, self.device, batch_size)
        write_evaluation(test_dir, m, test.class_names, test.labels, pred, figure=figures,
                         variant=self.variant, model=cfg.model, seed=cfg.seed,
                         run_id=self.run_id)
        return result, m


def read_sets(train_dir: Path, prepared: Path, test: bool = True):
    """A cell's (training set, memory-mapped: `fit` loads it or reads it per batch, as
    train.load says; the real val split; the real test split, or None without `test`); one
    line when the variant's set is missing, or stale (`check_variant`)."""
    from synthaug.pipeline.data.storage import read_dataset

    check_variant(train_dir, prepared)
    return (read_dataset(train_dir, manifest=True), read_dataset(prepared / "val", mmap=False),
            read_dataset(prepared / "test", mmap=False) if test else None)


def check_variant(train_dir: Path, prepared: Path) -> str:
    """The content hash of the variant's training set in `train_dir`, once it is certain
    that the set is there and was made from the prepared train split as it is now (one line
    naming the stage to rerun otherwise); reads the meta.json files alone."""
    from synthaug.pipeline.core.errors import SynthaugError
    from synthaug.pipeline.data.lineage import check_fresh, dataset_hash
    from synthaug.pipeline.data.storage import is_dataset, read_meta

    if not is_dataset(train_dir):
        raise SynthaugError(f"{train_dir}: no training set for variant {train_dir.name!r}; "
                            "run `synthaug compose` (or `dvc repro`) first")
    meta = read_meta(train_dir / "meta.json")
    check_fresh(train_dir, meta, "variant", prepared / "train", dataset_hash(prepared / "train"))
    return meta["content_hash"]


# ---------------------------------------------------------------------- lines for the user
def epoch_line(row: dict) -> str:
    return (f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  train acc "
            f"{row['train_accuracy']:.4f}  val loss {row['val_loss']:.4f}  val acc "
            f"{row['val_accuracy']:.4f}  {row['seconds']:6.1f}s{'  *' if row['best'] else ''}")


def fit_line(result: FitResult) -> str:
    return (f"best epoch {result.best_epoch}/{result.epochs_run}: val accuracy "
            f"{result.best_val_accuracy:.4f} ({result.seconds:.1f} s"
            f"{', stopped early' if result.stopped_early else ''})")


def test_line(m: dict) -> str:
    return (f"test ({m['num_test']} real images): accuracy {m['accuracy']:.4f}  macro-F1 "
            f"{m['macro_f1']:.4f}")
