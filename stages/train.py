"""`synthaug train`: fit and test classifiers; the dvc stage trains every cell of the study."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.stages.common import ParamsOpt, SetOpt, output, params_from, say, user_errors
from synthaug.stages.evaluate import ModelOpt, SeedOpt, VariantOpt, study_cell


def _every(what: str, more: str = ""):
    return Annotated[bool, typer.Option(f"--study-{what}",
                                        help=f"train every {what[:-1]} of study.{what}{more}")]


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            variant: VariantOpt = None, model: ModelOpt = None, seed: SeedOpt = None,
            study_seeds: _every("seeds") = False, study_models: _every("models") = False,
            study_variants: _every("variants", " (with --study-models --study-seeds: the "
                                   "whole study, what the dvc stage runs)") = False,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True,
            test: Annotated[bool, typer.Option(
                help="then score it on the real test split, as `synthaug evaluate` does")] = True,
            figures: Annotated[bool, typer.Option(
                help="learning-curve and confusion PNGs (dvc plots draws both from the data)")] = True,
            ) -> Path:
    """Train `--model` (or every model of `study.models`) on `--variant`'s (or every one of
    `study.variants`) training set with `--seed` (or every seed of `study.seeds`), then test
    each on the held-out real test split.

    Reads `paths.variants`/VARIANT (from `synthaug
    compose`); the best epoch is chosen on `paths.prepared`/val. Per run: the model folder
    `paths.models`/VARIANT/MODEL/seedN, dvclive logs under `paths.train_metrics`, test scores
    under `paths.evaluate_metrics` (same sub-path); with --study-seeds also
    `paths.study_metrics`/VARIANT.json (every seed's test scores, by model). Recipe: `train`,
    `train.per_model.MODEL` on top. On a CPU the runs train side by side in `study.workers`
    forked one-thread processes, in one queue, transfer models first (the short runs fill the
    end); or data parallel: `torchrun --nproc_per_node N -m stages train ...`.

    **Examples**

    ```
    synthaug train --variant real --model cnn
    synthaug train --variant real+classic --model efficientnet_lite0 --seed 1
    synthaug train --study-variants --study-models --study-seeds
    ```
    """
    p = params_from(params, set_)
    if study_seeds and seed is not None or study_models and model is not None or \
            study_variants and variant is not None:
        raise SynthaugError("--seed with --study-seeds, --model with --study-models or --variant "
                            "with --study-variants: give one of each")
    from synthaug.pipeline.classifiers.runs import study_runs, write_summaries
    from synthaug.pipeline.core.device import pick_device
    from synthaug.pipeline.core.distributed import from_env
    from synthaug.pipeline.core.executors import Remote
    from synthaug.pipeline.core.pool import imap, plan, preload
    dist = from_env()  # under torchrun: this process's rank; else a single process
    models = p.study.models if study_models else [model]
    variants = p.study.variants if study_variants else [variant]
    runs = study_runs(models, variants, p.study.seeds if study_seeds else [seed])
    cells = [study_cell(p, v, m, s) for v, m, s in runs]  # bad input: refused here, at once
    name, cfg, _ = cells[0]
    # study.workers processes (torchrun: this one), each on train.threads threads (0: its
    # share of the cores), as every section's workers and threads mean
    workers, threads = (plan(len(runs), pick_device(cfg.device).type, p.study.workers)
                        if dist.world == 1 else (1, 0))
    # executor.kind slurm or ray: each run a cell there, kept under paths.checkpoints for a rerun
    outs = (p.paths.models, p.paths.train_metrics, *[p.paths.evaluate_metrics] * test)
    remote = Remote(p.executor, p.paths.checkpoints / "cells" / "train", [p.paths.prepared, p.paths.variants],
                    lambda c: [o / c[2] for o in outs]) if dist.world == 1 and p.executor.kind != "local" else None
    if workers > 1 or remote:
        threads = cfg.threads or threads
        say(f"{'study' if study_variants else name}: {len(runs)} runs " + (f"as {p.executor.kind} cells" if remote
                                                                           else f"in {workers} processes of {threads} thread(s)"))
        preload("dvclive", "synthaug.pipeline.classifiers.cell", "synthaug.pipeline.classifiers.metrics")
    # the recipes are built once, here, and handed to the workers with the shared state
    state = (p, progress and workers == 1 and not remote, test, figures, workers > 1 or bool(remote), len(models) > 1, len(variants) > 1)
    scores: dict[str, dict[str, dict]] = {}  # (tuple: a picklable "state = its args")
    for i, row in sorted(imap(tuple, (state,), _train_one, cells, workers, threads,
                                    describe=lambda c: f"cell {c[2]}", remote=remote, say=say)):
        variant, cfg, _ = cells[i]
        scores.setdefault(variant, {}).setdefault(cfg.model, {})[f"seed{cfg.seed}"] = row
    if study_seeds and test and dist.main:  # every seed's test scores of a variant, by model
        for line in write_summaries(p.paths.study_metrics, scores):
            say(line)
    # the timing file's name
    if study_variants:
        return None
    if study_models:
        return Path(name)
    return Path(name, cfg.model) if study_seeds else cells[0][2]


def _train_one(state: tuple, cell: tuple) -> dict:
    """Train and test one study cell (variant, its recipe, run sub-path), here or in a worker:
    its test scores ({} without test). Runs side by side (`tagged`) start their lines with
    variant, model, seed."""
    import torch
    from synthaug.pipeline.classifiers.cell import Cell, epoch_line, fit_line, read_sets, test_line
    from synthaug.pipeline.core.device import pick_device
    from synthaug.pipeline.core.distributed import from_env
    p, progress, test, figures, tagged, named, many = state
    variant, cfg, run = cell
    tag = f"{variant + ' ' if many else ''}{cfg.model + ' ' if named else ''}seed {cfg.seed}: "
    tag, dist = tag if tagged else "", from_env()
    train, val, test_split = read_sets(p.paths.variants / variant, p.paths.prepared, test)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = dist.device(pick_device(cfg.device))
    cell = Cell(variant, train, cfg, p.models, device)  # seeds from the recipe, builds the model
    say(cell.describe(len(val)))
    dirs = p.paths.models / run, p.paths.train_metrics / run, p.paths.evaluate_metrics / run  # torchrun: rank 0's
    with output(dirs[0], dist) as model_dir, output(dirs[1], dist) as log_dir, \
            (output(dirs[2], dist) if test else nullcontext()) as test_dir:
        result, m = cell.run(val, test_split, model_dir, log_dir, test_dir,
                             figures=figures, progress=progress and dist.main, dist=dist,
                             on_epoch=lambda row: say(tag + epoch_line(row)), batch_size=p.evaluate.batch_size)
    say(f"{tag}{fit_line(result)} -> {dirs[0]}")
    if m is None:
        return {}
    say(f"{tag}{test_line(m)} -> {dirs[2]}")
    return dict(accuracy=m["accuracy"], macro_f1=m["macro_f1"], run_id=cell.run_id)

