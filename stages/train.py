"""`synthaug train`: fit one classifier on the prepared train split (val for early stopping)."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.errors import SynthaugError
from stages.common import ParamsOpt, SetOpt, output, params_from, say, user_errors
from stages.evaluate import ModelOpt, SeedOpt, VariantOpt, study_cell


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            variant: VariantOpt = None, model: ModelOpt = None, seed: SeedOpt = None,
            study_seeds: Annotated[bool, typer.Option(
                "--study-seeds", help="train every seed of study.seeds (what a dvc cell does)")] = False,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True,
            test: Annotated[bool, typer.Option(
                help="then score it on the real test split, as `synthaug evaluate` does")] = True,
            figures: Annotated[bool, typer.Option(
                help="learning-curve and confusion PNGs (dvc plots draws both from the data)")] = True,
            ) -> Path:
    """Train one study cell: `--model` on variant `--variant`'s training set with `--seed`
    (or every seed of `study.seeds`), then test it on the held-out real test split.

    Reads `paths.variants`/VARIANT (from `synthaug compose`); the best epoch is chosen on
    `paths.prepared`/val; on-the-fly augmentation when the variant (or `train.online_augment`)
    asks. Per seed: the model folder `paths.models`/VARIANT/MODEL/seedN (config.json +
    weights.safetensors), dvclive logs under `paths.train_metrics` and test scores under
    `paths.evaluate_metrics` (same sub-path); with --study-seeds also
    `paths.evaluate_metrics`/VARIANT/MODEL.json, every seed in one row of `dvc metrics show`.
    The recipe is `train` with `train.per_model.MODEL` on top. On a CPU the seeds train side
    by side in `study.workers` one-thread processes (forked: free to start). Data parallel:
    `torchrun --nproc_per_node N -m stages train ...` (ranks split each batch; rank 0 writes).
    """
    p = params_from(params, set_)
    if study_seeds and seed is not None:
        raise SynthaugError("--seed and --study-seeds: give one of them")
    from pipeline.core.distributed import from_env

    dist = from_env()  # under torchrun: this process's rank; else a single process
    seeds = list(p.study.seeds) if study_seeds else [seed]
    name, cfg, run = study_cell(p, variant, model, seeds[0])  # bad input: refused here, once
    from pipeline.core.device import pick_device
    from pipeline.core.pool import imap, plan
    workers, threads = (plan(len(seeds), pick_device(cfg.device).type, p.study.workers)
                        if dist.world == 1 and not cfg.threads else (1, 0))  # threads: as asked
    if workers > 1:
        say(f"{name} / {cfg.model}: seeds {seeds} in {workers} processes of {threads} thread(s)")
    state = (p, variant, model, progress and workers == 1, test, figures, workers > 1)
    scores = {f"seed{seeds[i]}": row for i, row in  # tuple: a picklable "state = its args"
              sorted(imap(tuple, (state,), _train_one, seeds, workers, threads))}
    if study_seeds and test and dist.main:  # every seed's test scores in one row of `dvc metrics show`
        from pipeline.classifiers.runs import write_summary
        mean = write_summary(out := p.paths.evaluate_metrics / name / f"{cfg.model}.json", scores)
        say(f"{name} / {cfg.model}: mean test accuracy {100 * mean:.1f}% ({len(scores)} seeds) -> {out}")
    return Path(name, cfg.model) if study_seeds else run  # the cell of the timing file


def _train_one(state: tuple, seed: int) -> dict:
    """Train (and test) one seed of a cell, here or in a worker process: its test scores
    (empty without test). Seeds side by side (`tagged`) start their lines with the seed."""
    from pipeline.core.distributed import from_env

    p, variant, model, progress, test, figures, tagged = state
    variant, cfg, run = study_cell(p, variant, model, seed)
    dist, tag = from_env(), f"seed {seed}: " if tagged else ""
    import torch

    from pipeline.classifiers.cell import Cell, epoch_line, fit_line, test_line
    from pipeline.core.device import pick_device, seed_everything
    from pipeline.data.storage import is_dataset, read_dataset

    if not is_dataset(train_dir := p.paths.variants / variant):
        raise SynthaugError(f"{train_dir}: no training set for variant {variant!r}; run "
                            "`synthaug compose` (or `dvc repro`) first")
    train = read_dataset(train_dir, manifest=True)  # memory-mapped: `fit` loads it or reads it per batch (train.load)
    val = read_dataset(p.paths.prepared / "val", mmap=False)
    device = dist.device(pick_device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    generator = seed_everything(cfg.seed, deterministic=device.type == "cpu")
    cell = Cell(variant, train, cfg, p.models)  # after seeding: the initial weights
    say(cell.describe(len(val), device))
    test_split = read_dataset(p.paths.prepared / "test", mmap=False) if test else None
    dirs = p.paths.models / run, p.paths.train_metrics / run, p.paths.evaluate_metrics / run
    # under torchrun only rank 0 writes; the other ranks write into scratch folders
    with output(dirs[0], dist) as model_dir, output(dirs[1], dist) as log_dir, \
            (output(dirs[2], dist) if test else nullcontext()) as test_dir:
        result, m = cell.run(val, test_split, device, generator, model_dir, log_dir, test_dir,
                             figures=figures, progress=progress and dist.main, dist=dist,
                             on_epoch=lambda row: say(tag + epoch_line(row)), batch_size=p.evaluate.batch_size)
    say(f"{tag}{fit_line(result)} -> {dirs[0]}")
    if m is not None:
        say(f"{tag}{test_line(m)} -> {dirs[2]}")
    return {} if m is None else dict(accuracy=m["accuracy"], macro_f1=m["macro_f1"], run_id=cell.run_id)

