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
                "--study-seeds", help="train every seed of study.seeds")] = False,
            study_models: Annotated[bool, typer.Option(
                "--study-models", help="train every model of study.models (with --study-seeds: "
                "what a dvc cell does)")] = False,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True,
            test: Annotated[bool, typer.Option(
                help="then score it on the real test split, as `synthaug evaluate` does")] = True,
            figures: Annotated[bool, typer.Option(
                help="learning-curve and confusion PNGs (dvc plots draws both from the data)")] = True,
            ) -> Path:
    """Train one study cell: `--model` (or every model of `study.models`) on variant
    `--variant`'s training set with `--seed` (or every seed of `study.seeds`), then test it
    on the held-out real test split.

    Reads `paths.variants`/VARIANT (from `synthaug compose`); the best epoch is chosen on
    `paths.prepared`/val. Per model and seed: the model folder `paths.models`/VARIANT/MODEL/seedN,
    dvclive logs under `paths.train_metrics`, test scores under `paths.evaluate_metrics` (same
    sub-path); with --study-seeds also `paths.evaluate_metrics`/VARIANT.json (every seed's test
    scores, by model). Recipe: `train`, `train.per_model.MODEL` on top. On a CPU the runs train
    side by side in `study.workers` forked one-thread processes, transfer models first; or data
    parallel: `torchrun --nproc_per_node N -m stages train ...`.
    """
    p = params_from(params, set_)
    if study_seeds and seed is not None or study_models and model is not None:
        raise SynthaugError("--seed with --study-seeds, or --model with --study-models: give one")
    from pipeline.classifiers.config import TRANSFER_MODELS as HEAVY  # the long runs first
    from pipeline.core.distributed import from_env

    dist = from_env()  # under torchrun: this process's rank; else a single process
    models = sorted(p.study.models, key=lambda m: m not in HEAVY) if study_models else [model]
    runs = [(m, s) for m in models for s in (p.study.seeds if study_seeds else [seed])]
    cells = [study_cell(p, variant, m, s) for m, s in runs]  # bad input: refused here, at once
    name, cfg, _ = cells[0]
    from pipeline.core.device import pick_device
    from pipeline.core.pool import imap, plan, preload
    workers, threads = (plan(len(runs), pick_device(cfg.device).type, p.study.workers)
                        if dist.world == 1 and not cfg.threads else (1, 0))  # threads: as asked
    if workers > 1:
        say(f"{name}: {len(runs)} runs in {workers} processes of {threads} thread(s)")
        preload("dvclive", "pipeline.classifiers.cell", "pipeline.classifiers.metrics")
    state = (p, variant, progress and workers == 1, test, figures, workers > 1, len(models) > 1)
    scores: dict[str, dict] = {}  # (tuple: a picklable "state = its args")
    for i, row in sorted(imap(tuple, (state,), _train_one, runs, workers, threads)):
        scores.setdefault(cells[i][1].model, {})[f"seed{cells[i][1].seed}"] = row
    if study_seeds and test and dist.main:  # every seed's test scores in one row of `dvc metrics show`
        from pipeline.classifiers.runs import write_summary
        for m, mean in write_summary(out := p.paths.evaluate_metrics / f"{name}.json", scores).items():
            say(f"{name} / {m}: mean test accuracy {100 * mean:.1f}% ({len(scores[m])} seeds) -> {out}")
    return Path(name) if study_models else Path(name, cfg.model) if study_seeds else cells[0][2]  # timing file


def _train_one(state: tuple, job: tuple[str | None, int | None]) -> dict:
    """Train and test one (model, seed) of a cell, here or in a worker: its test scores ({}
    without test). Runs side by side (`tagged`) start their lines with model and seed."""
    import torch

    from pipeline.classifiers.cell import Cell, epoch_line, fit_line, read_sets, test_line
    from pipeline.core.device import pick_device, seed_everything
    from pipeline.core.distributed import from_env

    p, variant, progress, test, figures, tagged, named = state
    variant, cfg, run = study_cell(p, variant, *job)
    dist, tag = from_env(), f"{cfg.model + ' ' if named else ''}seed {cfg.seed}: " if tagged else ""

    train, val, test_split = read_sets(p.paths.variants / variant, p.paths.prepared, test)
    device = dist.device(pick_device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    generator = seed_everything(cfg.seed, deterministic=device.type == "cpu")
    cell = Cell(variant, train, cfg, p.models)  # after seeding: the initial weights
    say(cell.describe(len(val), device))
    dirs = p.paths.models / run, p.paths.train_metrics / run, p.paths.evaluate_metrics / run  # torchrun: rank 0's
    with output(dirs[0], dist) as model_dir, output(dirs[1], dist) as log_dir, \
            (output(dirs[2], dist) if test else nullcontext()) as test_dir:
        result, m = cell.run(val, test_split, device, generator, model_dir, log_dir, test_dir,
                             figures=figures, progress=progress and dist.main, dist=dist,
                             on_epoch=lambda row: say(tag + epoch_line(row)), batch_size=p.evaluate.batch_size)
    say(f"{tag}{fit_line(result)} -> {dirs[0]}")
    if m is not None:
        say(f"{tag}{test_line(m)} -> {dirs[2]}")
    return {} if m is None else dict(accuracy=m["accuracy"], macro_f1=m["macro_f1"], run_id=cell.run_id)

