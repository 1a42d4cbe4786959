"""`synthaug train-generator [gan|vae|diffusion ...]`: fit label-conditioned generators.

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
def command(generators: Annotated[list[str] | None, typer.Argument(
                help="gan, vae and/or diffusion [default: all three]", metavar="[GENERATOR]...")] = None,
            params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True) -> str | None:
    """Train label-conditioned generators on `paths.prepared`/train (val is monitored).

    GENERATOR is gan (conditional DCGAN), vae (conditional VAE) or diffusion (class-conditional
    diffusion with diffusers); none: all three (what the dvc stage runs). A family's settings
    are `train_generator.<GENERATOR>`, the shared ones (seed, device, amp, log_every,
    checkpoint_every, grid_every, ...) live in `train_generator`. Budgets are optimiser steps
    (`steps`; latent diffusion adds `autoencoder_steps`), whatever the size of the split;
    `max_seconds` caps the time and is reported when it cuts a run short. On a CPU with two or
    more cores the families train side by side in forked one-thread processes, the longest
    (the GAN) first; `train_generator.threads`, a GPU or torchrun train them one after another.

    Writes `paths.generators`/GENERATOR (config.json + weights.safetensors, loadable without
    params.yaml) and `paths.generator_metrics`/GENERATOR (dvclive metrics and plots,
    history.json, grids/step_N.png every grid_every steps, samples.png at the end: one row
    per class). Killed runs (even kill -9) continue from the last checkpoint when rerun.
    Data parallel: `torchrun --nproc_per_node N -m stages train-generator GENERATOR`.
    """
    from generators.common import generator_class, longest_first

    p = params_from(params, set_)
    families = longest_first(list(dict.fromkeys(generators or [])) or None)
    for family in families:
        generator_class(family)  # unknown names fail here, before any heavy import
    from pipeline.core.device import pick_device
    from pipeline.core.distributed import from_env
    from pipeline.core.pool import imap, plan, usable_cores

    cfg, dist = p.train_generator, from_env()
    device = dist.device(pick_device(cfg.device))
    workers, threads = ((1, 0) if dist.world > 1 or cfg.threads or device.type != "cpu"
                        else plan(len(families), "cpu", usable_cores()))
    if workers > 1:
        say(f"train-generator: {', '.join(families)} side by side in {workers} processes of "
            f"{threads} thread(s)")
    state = (p, progress and workers == 1, workers > 1)
    for _, line in imap(tuple, (state,), _train_one, families, workers, threads):
        say(line)
    return families[0] if len(families) == 1 else None  # the timing file's name


def _train_one(state: tuple, family: str) -> str:
    """Train, save and close one family, here or in a worker: its summary line."""
    import torch
    from generators.run import GeneratorRun
    from pipeline.core.device import pick_device, seed_everything
    from pipeline.core.distributed import from_env
    from pipeline.data.storage import read_dataset

    p, progress, tagged = state
    cfg, dist, tag = p.train_generator, from_env(), f"{family}: " if tagged else ""
    train = read_dataset(p.paths.prepared / "train", mmap=False)
    val = read_dataset(p.paths.prepared / "val", mmap=False)
    device = dist.device(pick_device(cfg.device))
    torch.set_num_threads(cfg.threads) if cfg.threads else None
    rng = seed_everything(cfg.seed, deterministic=device.type == "cpu")
    job = GeneratorRun(family, cfg, train, val, p.paths.checkpoints / "train_generator" / family,
                       device, rng, dist)
    say(tag + job.describe())
    if note := job.resume():
        say(tag + note)
    job.train(progress, log=lambda line: say(tag + line))
    if job.trainer.cut_short:
        say(f"{family}: max_seconds {cfg.family(family).max_seconds:g} reached: stopped "
            f"after {job.trainer.step} of {job.trainer.total} steps")
    out_model, out_metrics = p.paths.generators / family, p.paths.generator_metrics / family
    with output(out_model, dist) as model_dir, output(out_metrics, dist) as log_dir:
        job.save(model_dir, log_dir)
    job.close()
    return f"{job.summary_line()} -> {out_model}, {out_metrics / 'samples.png'}"
