"""`synthaug train-generator <gan|vae|diffusion>`: fit one label-conditioned generator.

Resumable (generators/run.py): the training state is checkpointed under
`paths.checkpoints`/train_generator/<family>, outside DVC's outs; a rerun with the same config
and data continues from there. The finished generator and its metrics folder are written
atomically, then the checkpoint is removed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOpt, SetOpt, output, params_from, say, user_errors


@user_errors
def command(generator: Annotated[str, typer.Argument(help="gan, vae or diffusion", metavar="GENERATOR")],
            params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True) -> str:
    """Train a label-conditioned generator on `paths.prepared`/train (val is monitored).

    GENERATOR is gan (conditional DCGAN), vae (conditional VAE) or diffusion (class-conditional
    diffusion with diffusers); its settings are `train_generator.<GENERATOR>`, the shared ones
    (seed, device, amp, log_every, checkpoint_every, grid_every, ...) live in
    `train_generator`. Budgets are optimiser steps (`steps`; latent diffusion adds
    `autoencoder_steps`), whatever the size of the split; `max_seconds` caps the time and is
    reported when it cuts a run short.

    Writes `paths.generators`/GENERATOR (config.json + weights.safetensors, loadable without
    params.yaml) and `paths.generator_metrics`/GENERATOR (dvclive metrics and plots,
    history.json, grids/step_N.png every grid_every steps, samples.png at the end: one row
    per class). Killed runs (even kill -9) continue from the last checkpoint when rerun.
    Data parallel: `torchrun --nproc_per_node N -m stages train-generator GENERATOR`.
    """
    from generators.common import generator_class

    p = params_from(params, set_)
    generator_class(generator)  # unknown names fail here, before any heavy import
    import torch

    from generators.run import GeneratorRun
    from pipeline.core.device import pick_device, seed_everything
    from pipeline.core.distributed import from_env
    from pipeline.data.storage import read_dataset

    cfg = p.train_generator
    train = read_dataset(p.paths.prepared / "train", mmap=False)
    val = read_dataset(p.paths.prepared / "val", mmap=False)
    dist = from_env()  # under torchrun: this process's rank (rank 0 writes), else one process
    device = dist.device(pick_device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = seed_everything(cfg.seed, deterministic=device.type == "cpu")
    job = GeneratorRun(generator, cfg, train, val, p.paths.checkpoints / "train_generator" / generator,
                       device, rng, dist)
    say(job.describe())
    if note := job.resume():
        say(note)
    job.train(progress, log=say)
    if job.trainer.cut_short:
        say(f"{generator}: max_seconds {cfg.family(generator).max_seconds:g} reached: stopped "
            f"after {job.trainer.step} of {job.trainer.total} steps")
    out_model, out_metrics = p.paths.generators / generator, p.paths.generator_metrics / generator
    with output(out_model, dist) as model_dir, output(out_metrics, dist) as log_dir:
        job.save(model_dir, log_dir)
    job.close()
    say(f"{job.summary_line()} -> {out_model}, {out_metrics / 'samples.png'}")
    return generator  # the cell of the timing file
