"""`synthaug train-generator <gan|vae|diffusion>`: fit one label-conditioned generator.

Resumable: every `checkpoint_every` steps the whole training state goes (atomically) to
`paths.checkpoints`/train_generator/<family>/checkpoint.pt, outside DVC's outs (DVC deletes
those before it reruns a stage). A rerun with the same config and data continues from there;
a changed config or data set, or an unreadable checkpoint, starts over. The finished
generator and its metrics folder are written atomically, then the checkpoint is removed.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOpt, SetOpt, params_from, say, user_errors


@user_errors
def command(generator: Annotated[str, typer.Argument(help="gan, vae or diffusion", metavar="GENERATOR")],
            params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True) -> None:
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
    import numpy as np
    import torch
    from dvclive import Live
    from tqdm.auto import tqdm

    from generators.common import build_generator, sample_images, save_generator
    from generators.resume import load_checkpoint, run_key, save_checkpoint
    from generators.training import GeneratorTrainer
    from pipeline.core.device import pick_device, seed_everything
    from pipeline.core.distributed import from_env
    from pipeline.report.figures import sample_grid
    from pipeline.data.storage import read_dataset
    from stages.common import output

    cfg = p.train_generator
    fcfg = cfg.family(generator)
    train = read_dataset(p.paths.prepared / "train", mmap=False)
    val = read_dataset(p.paths.prepared / "val", mmap=False)
    dist = from_env()  # under torchrun: this process's rank (rank 0 writes), else one process
    device = dist.device(pick_device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = seed_everything(cfg.seed, deterministic=device.type == "cpu")
    model = build_generator(generator, fcfg, train.shape, train.class_names)
    trainer = GeneratorTrainer(model, cfg, (train.images, train.labels),
                               (val.images, val.labels), device, rng, dist)
    total = sum(t.numel() for t in model.parameters())
    say(f"train-generator {generator}: {total:,} parameters, {len(train)} train / {len(val)} val "
        f"images of {'x'.join(map(str, train.shape))}, {len(train.class_names)} classes, "
        f"{trainer.total} steps of {fcfg.batch_size}, on {device}")

    work = p.paths.checkpoints / "train_generator" / generator
    ckpt, live_dir = work / "checkpoint.pt", work / "live"
    key = run_key(generator, cfg, train.meta.get("content_hash", ""))
    state, note = load_checkpoint(ckpt, key, device)
    if state is not None:
        trainer.load_state_dict(state)
    if note:
        say(note)
    del state
    if dist.active:  # every rank has read the checkpoint before rank 0 changes the folder
        torch.distributed.barrier()
    if not dist.main:  # the other ranks log into a scratch folder that nobody keeps
        import tempfile

        work = Path(tempfile.mkdtemp(prefix=f"rank{dist.rank}-"))
        ckpt, live_dir = work / "checkpoint.pt", work / "live"
    elif trainer.step == 0 and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(live_dir / "plots", ignore_errors=True)  # rebuilt from the history below

    labels = np.repeat(np.arange(len(train.class_names)), cfg.grid_per_class)

    def grid(path: Path, title: str) -> tuple[np.ndarray, np.ndarray]:
        path.parent.mkdir(parents=True, exist_ok=True)
        images = sample_images(trainer.ema, labels, torch.Generator().manual_seed(cfg.seed))
        sample_grid(images, labels, train.class_names, path, per_class=cfg.grid_per_class,
                    title=title)
        return images, labels

    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False)
    live.log_params({"generator": generator, "parameters": total, **fcfg.model_dump(mode="json")})

    def log(row: dict) -> None:
        for k, v in row.items():
            if k not in ("step", "seconds"):
                live.log_metric(k, v)
        live.next_step()

    for row in trainer.history:  # a resumed run replays what the killed one logged
        log(row)
    every = [cfg.log_every, cfg.checkpoint_every] + ([cfg.grid_every] if cfg.grid_every else [])
    overhead = 0.0  # validation, checkpoints and grids: seconds outside the optimiser steps
    bar = tqdm(total=trainer.total, initial=trainer.step, unit="step", desc=generator,
               disable=None if progress and dist.main else True, leave=False)
    while not trainer.done:
        row = trainer.train_steps(min(n - trainer.step % n for n in every), bar)
        s, start = trainer.step, time.perf_counter()
        if s % cfg.checkpoint_every == 0 or trainer.done:
            row.update(trainer.validate())
        trainer.history.append(row)  # a round ends at a log, checkpoint or grid step
        log(row)
        losses = "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                           if k not in ("step", "seconds") and not k.startswith("lr_"))
        say(f"step {s:5d}/{trainer.total}  {losses}  {trainer.seconds:6.1f}s")
        if cfg.grid_every and s % cfg.grid_every == 0 and not trainer.done and dist.main:
            grid(live_dir / "grids" / f"step_{s:06d}.png", f"{generator}: step {s}")
        if (s % cfg.checkpoint_every == 0 or trainer.done) and dist.main:
            save_checkpoint(ckpt, key, trainer.state_dict())
        overhead += time.perf_counter() - start
    bar.close()
    if trainer.cut_short:
        say(f"{generator}: max_seconds {fcfg.max_seconds:g} reached: stopped after "
            f"{trainer.step} of {trainer.total} steps")
    live.summary.update({"steps": trainer.step, "planned_steps": trainer.total,
                         "cut_short": trainer.cut_short, "train_seconds": trainer.seconds,
                         "ms_per_step": 1000 * trainer.seconds / max(1, trainer.step),
                         "overhead_seconds": overhead})
    live.end()
    if dist.main:  # the other ranks' folders are thrown away: no sampling for them
        grid(live_dir / "samples.png", f"{generator} ({trainer.step} steps): one row per class")
    (live_dir / "history.json").write_text(json.dumps(trainer.history, indent=1) + "\n")
    out_model = p.paths.generators / generator
    with output(out_model, dist) as model_dir, \
            output(p.paths.generator_metrics / generator, dist) as log_dir:
        save_generator(model_dir, trainer.ema, {
            "train_generator": cfg.model_dump(mode="json", exclude={"gan", "vae", "diffusion"}),
            "trained_on": {"content_hash": train.meta.get("content_hash"),
                           "source": train.meta.get("source")},
            "steps": trainer.step})
        shutil.copytree(live_dir, log_dir, dirs_exist_ok=True)
    shutil.rmtree(work)
    say(f"{generator}: {trainer.step} steps in {trainer.seconds:.1f} s "
        f"({1000 * trainer.seconds / max(1, trainer.step):.0f} ms per step; validation, "
        f"checkpoints and grids {overhead:.1f} s) -> {out_model}, "
        f"{p.paths.generator_metrics / generator / 'samples.png'}")
