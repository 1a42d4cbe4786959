"""`synthaug train`: fit one classifier on the prepared train split (val for early stopping)."""
from __future__ import annotations

import json
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
                "--study-seeds", help="train every seed of study.seeds, one after the other "
                "(what a dvc cell does)")] = False,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True,
            test: Annotated[bool, typer.Option(
                help="then score it on the real test split, as `synthaug evaluate` does")] = True,
            figures: Annotated[bool, typer.Option(
                help="learning-curve and confusion PNGs (dvc plots draws both from the data)")] = True,
            ) -> Path:
    """Train one study cell: `--model` on variant `--variant`'s training set with `--seed`
    (or every seed of `study.seeds`), then test it on the held-out real test split.

    Reads `paths.variants`/VARIANT (made by `synthaug compose`) and selects the best epoch on
    `paths.prepared`/val. When the variant (or `train.online_augment`) asks for on-the-fly
    augmentation, every epoch sees freshly augmented copies. Per seed it writes the model folder
    `paths.models`/VARIANT/MODEL/seedN (config.json + weights.safetensors, loadable without
    params.yaml), dvclive metrics and plots to `paths.train_metrics`/VARIANT/MODEL/seedN and the
    test scores where `synthaug evaluate` puts them (`paths.evaluate_metrics`/VARIANT/MODEL/seedN);
    with --study-seeds also `paths.evaluate_metrics`/VARIANT/MODEL.json, every seed's test
    scores in one row for `dvc metrics show`.

    Data parallel on several GPUs or processes: `torchrun --nproc_per_node N -m stages train
    ...`; the ranks split every batch, average the gradients and rank 0 writes.

    The recipe is the `train` section with `train.per_model.MODEL` on top. Training and
    testing every seed in one process saves ~8 s per run (importing torch, and torch._dynamo
    that torch.optim loads) over one process per step.
    """
    p = params_from(params, set_)
    if study_seeds and seed is not None:
        raise SynthaugError("--seed and --study-seeds: give one of them")
    from pipeline.core.distributed import from_env

    dist = from_env()  # under torchrun: this process's rank; else a single process
    scores = {}
    for s in (list(p.study.seeds) if study_seeds else [seed]):
        name, cfg, run = study_cell(p, variant, model, s)
        scores[f"seed{cfg.seed}"] = _train_one(p, name, cfg, run, progress, test, figures, dist)
    if study_seeds and test and dist.main:  # every seed's test scores in one row of `dvc metrics show`
        from pipeline.data.outputs import atomic_output

        out = p.paths.evaluate_metrics / name / f"{cfg.model}.json"
        mean = sum(row["accuracy"] for row in scores.values()) / len(scores)
        with atomic_output(out, is_dir=False) as f:
            f.write_text(json.dumps({"accuracy_mean": mean, **scores}, indent=2) + "\n")
        say(f"{name} / {cfg.model}: mean test accuracy {100 * mean:.1f}% over {len(scores)} "
            f"seed(s) -> {out}")
    return Path(name, cfg.model) if study_seeds else run  # the cell of the timing file


def _train_one(p, variant: str, cfg, run: Path, progress, test, figures, dist) -> dict:
    """Train (and test) one seed; its test scores (empty without test)."""
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
                             on_epoch=lambda row: say(epoch_line(row)), batch_size=p.evaluate.batch_size)
    say(f"{fit_line(result)} -> {dirs[0]}")
    if m is not None:
        say(f"{test_line(m)} -> {dirs[2]}")
    return {} if m is None else dict(accuracy=m["accuracy"], macro_f1=m["macro_f1"], run_id=cell.run_id)

