"""`synthaug train-generator [gan vae diffusion]`: fit label-conditioned generators.

Resumable (generators/run.py): each family's training state is checkpointed under
`paths.checkpoints`/train_generator/<family>, outside DVC's outs; a rerun with the same config
and data continues from there. Each finished generator and its metrics folder are written
atomically, then its checkpoint is removed. Several families train side by side on a CPU
(`train_generator.workers` one-thread processes, pipeline.core.pool).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import ParamsOpt, SetOpt, output, params_from, say, user_errors


@user_errors
def command(generators: Annotated[list[str] | None, typer.Argument(
                help="gan, vae and/or diffusion (default: all three)", metavar="GENERATOR")] = None,
            params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True) -> str | None:
    """Train label-conditioned generators on `paths.prepared`/train (val is monitored).

    GENERATOR is gan (conditional DCGAN), vae (conditional VAE) or diffusion (class-conditional
    diffusion with diffusers), several at once, all three by default; their settings are
    `train_generator.<GENERATOR>`, the shared ones (seed, device, amp, cpu_bf16, workers,
    log_every, checkpoint_every, grid_every, ...) live in `train_generator`. Budgets are
    optimiser steps (`steps`; latent diffusion adds `autoencoder_steps`), whatever the size of
    the split; `max_seconds` caps the time and is reported when it cuts a run short. On a CPU
    the families train side by side in `train_generator.workers` one-thread processes.

    Writes `paths.generators`/GENERATOR (config.json + weights.safetensors, loadable without
    params.yaml) and `paths.generator_metrics`/GENERATOR (dvclive metrics and plots, history.json,
    grids/step_N.png every grid_every steps, samples.png: one row per class). Killed runs (even
    kill -9) continue from the last checkpoint when rerun. `train_generator.<GENERATOR>.pretrain`
    first trains it unconditionally on unlabelled images (`pool`: the rest of the train pool;
    `folder:PATH`: another image folder) for `pretrain.steps`, then adapts it to the split. Data parallel: `torchrun
    --nproc_per_node N -m stages train-generator GENERATOR`.

    **Examples**

    ```
    synthaug train-generator
    synthaug train-generator vae -S train_generator.vae.steps=3000
    synthaug train-generator vae -S train_generator.vae.pretrain.source=pool
    ```
    """
    from synthaug.generators.common import generator_class
    from synthaug.generators.config import FAMILIES

    p = params_from(params, set_)
    names = list(dict.fromkeys(generators or FAMILIES))  # in order, once each
    for name in names:
        generator_class(name)  # unknown names fail here, before any heavy import
    from synthaug.pipeline.core.device import pick_device
    from synthaug.pipeline.core.distributed import from_env
    from synthaug.pipeline.core.executors import Remote
    from synthaug.pipeline.core.pool import imap, plan

    cfg = p.train_generator  # under torchrun or on a GPU: one after another, in this process
    workers, threads = ((1, 0) if from_env().active else
                        plan(len(names), pick_device(cfg.device).type, cfg.workers))
    # executor.kind slurm or ray: each family a cell there (its checkpoints resume it too)
    remote = Remote(p.executor, p.paths.checkpoints / "cells" / "train_generator", [p.paths.prepared],
                    lambda f: [p.paths.generators / f, p.paths.generator_metrics / f]) \
        if p.executor.kind != "local" and not from_env().active else None
    if workers > 1 and not remote:  # handed out in the order named: the GAN, the longest, first
        threads = cfg.threads or threads
        say(f"train-generator: {', '.join(names)} in {workers} processes of {threads} thread(s)")
    for _, line in imap(_Family, (p, progress and workers == 1 and not remote), _Family.train,
                        names, workers, threads, remote=remote, say=say):
        say(line)
    return names[0] if len(names) == 1 else None  # the cell of the timing file


class _Family:
    """This process's (or a pool worker's) data and device; `train(family)` trains one family
    and saves it, and returns its closing line."""

    def __init__(self, p, progress: bool):
        import torch
        from synthaug.pipeline.core.device import pick_device
        from synthaug.pipeline.core.distributed import from_env
        from synthaug.pipeline.data.storage import read_dataset

        self.p, self.progress, cfg = p, progress, p.train_generator
        self.train_set = read_dataset(p.paths.prepared / "train", mmap=False)
        self.val = read_dataset(p.paths.prepared / "val", mmap=False)
        self.dist = from_env()  # under torchrun: this process's rank (rank 0 writes)
        self.device = self.dist.device(pick_device(cfg.device))
        if cfg.threads:  # (a pool worker already runs on them)
            torch.set_num_threads(cfg.threads)

    def train(self, family: str) -> str:
        from synthaug.generators.pretrain import pool_rest, pretrain_images
        from synthaug.generators.run import GeneratorRun
        from synthaug.pipeline.core.device import seed_everything

        p, cfg = self.p, self.p.train_generator
        pretrain = pretrain_images(family, cfg.family(family).pretrain, self.train_set.shape,
                                   lambda: pool_rest(p.paths.prepared))  # unlabelled, or None
        rng = seed_everything(cfg.seed, deterministic=self.device.type == "cpu")
        job = GeneratorRun(family, cfg, self.train_set, self.val,
                           p.paths.checkpoints / "train_generator" / family, self.device, rng,
                           self.dist, pretrain)
        say(job.describe())
        if note := job.resume():
            say(f"{family}: {note}")
        job.train(self.progress, log=lambda line: say(f"{family}: {line}"))  # maybe side by side
        if job.trainer.cut_short:
            say(f"{family}: max_seconds {cfg.family(family).max_seconds:g} reached: stopped "
                f"after {job.trainer.step} of {job.trainer.total} steps")
        out_model, out_metrics = p.paths.generators / family, p.paths.generator_metrics / family
        with output(out_model, self.dist) as model_dir, output(out_metrics, self.dist) as log_dir:
            job.save(model_dir, log_dir)
        job.close()
        return f"{job.summary_line()} -> {out_model}, {out_metrics / 'samples.png'}"
