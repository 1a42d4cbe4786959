"""One resumable generator training run: its work folder, checkpoints, logging and the finished
files, independent of the CLI (`synthaug train-generator` is this, with paths from params.yaml).

The work folder (the stage passes paths.checkpoints/train_generator/<family>: outside DVC's
outs, which DVC deletes before it reruns a stage) holds checkpoint.pt, written atomically every
`checkpoint_every` steps, and live/, the dvclive log. A rerun with the same config and data
continues from the checkpoint (generators.resume); a changed config or data set, or an
unreadable checkpoint, starts over with a note. Under torchrun every rank reads the checkpoint,
then only rank 0 keeps the folder: the other ranks log into scratch folders nobody keeps. The
caller saves the finished run (`save`, into folders it replaces atomically), then `close`
removes the work folder. A run that pretrains (generators.pretrain) is checkpointed at the end
of its pretraining phase too; the images it pretrains on are part of its identity.
"""
from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from synthaug.generators.common import (build_generator, nonfinite_weights, sample_images,
                                        save_generator)
from synthaug.generators.config import TrainGeneratorConfig
from synthaug.generators.pretrain import images_hash
from synthaug.generators.resume import load_checkpoint, run_key, save_checkpoint, unreadable
from synthaug.generators.training import GeneratorTrainer
from synthaug.pipeline.core.batches import precision_note
from synthaug.pipeline.core.distributed import SINGLE, Dist
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.storage import PackedDataset


class GeneratorRun:
    """`family` trained on `train` (val monitored) with `cfg`, resumable from `work`; build it
    right after seeding `rng` (the weights are initialised from torch's global RNG).
    `pretrain`: the unlabelled images of its pretraining phase (generators.pretrain), if any."""

    def __init__(self, family: str, cfg: TrainGeneratorConfig, train: PackedDataset,
                 val: PackedDataset, work: Path, device: torch.device, rng: torch.Generator,
                 dist: Dist = SINGLE, pretrain: np.ndarray | None = None):
        self.family, self.cfg, self.fcfg = family, cfg, cfg.family(family)
        self.train_set, self.dist = train, dist
        self.pretrain_size = 0 if pretrain is None else len(pretrain)
        model = build_generator(family, self.fcfg, train.shape, train.class_names)
        self.trainer = GeneratorTrainer(model, cfg, (train.images, train.labels),
                                        (val.images, val.labels), device, rng, dist, pretrain)
        self.parameters = sum(t.numel() for t in model.parameters())
        self.pretrain_hash = images_hash(pretrain)
        data = train.meta.get("content_hash", "") + (f"+{self.pretrain_hash}" if pretrain is not None else "")
        self.key = run_key(family, cfg, data)
        self.work, self.val_size = work, len(val)
        self.overhead = 0.0  # validation, checkpoints and grids: seconds outside the steps

    @property
    def live_dir(self) -> Path:
        return self.work / "live"

    def describe(self) -> str:
        t = self.train_set
        return (f"train-generator {self.family}: {self.parameters:,} parameters, {len(t)} train / "
                f"{self.val_size} val images of {'x'.join(map(str, t.shape))}, "
                f"{len(t.class_names)} classes, {self.trainer.total} steps of "
                f"{self.fcfg.batch_size}, on {self.trainer.device}; "
                + (f"the first {self.trainer.pretrain_end} pretrain on {self.pretrain_size} "
                   f"unlabelled images ({self.fcfg.pretrain.source}); " if self.pretrain_size else "")
                + precision_note(
                    self.trainer.device, self.cfg.amp, self.cfg.cpu_bf16, "train_generator.cpu_bf16"))

    def resume(self) -> str:
        """Continue from the work folder's checkpoint if it is this run's, and set the folder
        up; returns what happened, in words ("" when there was nothing to resume)."""
        path = self.work / "checkpoint.pt"
        state, note = load_checkpoint(path, self.key, self.trainer.device)
        if state is not None:  # readable, this run's key: its contents may still not fit
            fresh = copy.deepcopy(self.trainer.state_dict())
            try:
                self.trainer.load_state_dict(state)
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
                self.trainer.load_state_dict(fresh)  # as built: the same run as a fresh one
                note = unreadable(path, e)
            del fresh
        del state
        if self.dist.active:  # every rank has read the checkpoint before rank 0 changes the folder
            torch.distributed.barrier()
        if not self.dist.main:  # the other ranks log into a scratch folder that nobody keeps
            self.work = Path(tempfile.mkdtemp(prefix=f"rank{self.dist.rank}-"))
        elif self.trainer.step == 0 and self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.live_dir / "plots", ignore_errors=True)  # rebuilt from the history
        return note

    def _grid(self, path: Path, title: str) -> None:
        """One row of `grid_per_class` samples per class, always from the same noise."""
        from synthaug.pipeline.figures.data import sample_grid

        cfg, names = self.cfg, self.train_set.class_names
        labels = np.repeat(np.arange(len(names)), cfg.grid_per_class)
        path.parent.mkdir(parents=True, exist_ok=True)
        images = sample_images(self.trainer.ema, labels, torch.Generator().manual_seed(cfg.seed))
        sample_grid(images, labels, names, path, per_class=cfg.grid_per_class, title=title)

    def train(self, progress: bool = True, log: Callable[[str], None] = lambda line: None) -> None:
        """Train to the end of the budget (or max_seconds), logging every round to dvclive
        (a resumed run first replays the killed one's rows) and `log`, checkpointing every
        `checkpoint_every` steps; ends with samples.png and history.json in `live_dir`."""
        from dvclive import Live
        from tqdm.auto import tqdm

        cfg, trainer, main = self.cfg, self.trainer, self.dist.main
        live = Live(dir=str(self.live_dir), dvcyaml=False, save_dvc_exp=False)
        live.log_params({"generator": self.family, "parameters": self.parameters,
                         **self.fcfg.model_dump(mode="json")})

        def logged(row: dict) -> None:
            for k, v in row.items():
                if k not in ("step", "seconds", "phase"):
                    live.log_metric(k, v)
            live.next_step()

        for row in trainer.history:  # a resumed run replays what the killed one logged
            logged(row)
        every = [cfg.log_every, cfg.checkpoint_every] + ([cfg.grid_every] if cfg.grid_every else [])
        bar = tqdm(total=trainer.total, initial=trainer.step, unit="step", desc=self.family,
                   disable=None if progress and main else True, leave=False)
        while not trainer.done:
            row = trainer.train_steps(min(n - trainer.step % n for n in every), bar)
            s, start = trainer.step, time.perf_counter()
            # the end of the pretraining phase is checkpointed (and validated) too
            edge = s % cfg.checkpoint_every == 0 or trainer.done or s == trainer.pretrain_end
            if edge:
                row.update(trainer.validate())
            trainer.history.append(row)  # a round ends at a log, checkpoint or grid step
            logged(row)
            losses = "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                               if k not in ("step", "seconds", "phase") and not k.startswith("lr_"))
            log(f"step {s:5d}/{trainer.total}  {losses}  {trainer.seconds:6.1f}s")
            if cfg.grid_every and s % cfg.grid_every == 0 and not trainer.done and main:
                self._grid(self.live_dir / "grids" / f"step_{s:06d}.png", f"{self.family}: step {s}")
            if edge and main:
                save_checkpoint(self.work / "checkpoint.pt", self.key, trainer.state_dict())
            self.overhead += time.perf_counter() - start
        bar.close()
        live.summary.update({"steps": trainer.step, "planned_steps": trainer.total,
                             **self.phases(),
                             "cut_short": trainer.cut_short, "train_seconds": trainer.seconds,
                             "ms_per_step": 1000 * trainer.seconds / max(1, trainer.step),
                             "overhead_seconds": self.overhead})
        live.end()
        if main:  # the other ranks' folders are thrown away: no sampling for them
            self._grid(self.live_dir / "samples.png",
                       f"{self.family} ({trainer.step} steps): one row per class")
        (self.live_dir / "history.json").write_text(json.dumps(trainer.history, indent=1) + "\n")

    def save(self, model_dir: Path, log_dir: Path) -> None:
        """The finished generator (config.json + weights.safetensors) into `model_dir`, the
        metrics folder (dvclive, grids, samples.png, history.json) into `log_dir`; a generator
        with non-finite weights (its losses stayed finite to the last update) is refused."""
        bad, total = nonfinite_weights(self.trainer.ema.state_dict())
        if bad:
            setting = f"train_generator.{self.family}.lr"
            raise SynthaugError(f"{setting}: {bad:,} of {total:,} weights of the {self.family} are "
                                f"not finite after step {self.trainer.step} with {setting}="
                                f"{self.fcfg.lr:g}; lower {setting}, or check the data")
        save_generator(model_dir, self.trainer.ema, {
            "train_generator": self.cfg.model_dump(mode="json", exclude={"gan", "vae", "diffusion"}),
            "trained_on": {"content_hash": self.train_set.meta.get("content_hash"),
                           "source": self.train_set.meta.get("source")},
            "steps": self.trainer.step,
            **({"pretrain": {"source": self.fcfg.pretrain.source, "images": self.pretrain_size,
                             "content_hash": self.pretrain_hash, **self.phases()}}
               if self.pretrain_size else {})})
        shutil.copytree(self.live_dir, log_dir, dirs_exist_ok=True)

    def phases(self) -> dict:
        """The steps each phase ran (pretrain, then adapt); {} without pretraining."""
        t = self.trainer
        if not t.pretrain_end:
            return {}
        return {"pretrain_steps": min(t.step, t.pretrain_end),
                "adapt_steps": max(0, t.step - t.pretrain_end)}

    def close(self) -> None:
        """Done: the resume state goes (a rerun trains anew)."""
        shutil.rmtree(self.work)

    def summary_line(self) -> str:
        t = self.trainer
        return (f"{self.family}: {t.step} steps in {t.seconds:.1f} s "
                f"({1000 * t.seconds / max(1, t.step):.0f} ms per step; validation, "
                f"checkpoints and grids {self.overhead:.1f} s)")
