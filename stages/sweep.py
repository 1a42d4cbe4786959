"""`synthaug sweep`: accuracy against real images per class and against the synthetic ratio."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import ParamsOpt, SetOpt, params_from, say, user_errors

ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="only this model of sweep.models [default: every one, in one queue]")]


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            model: ModelOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bar (on a terminal)")] = True,
            ) -> str:
    """Train every model of `sweep.models` (or only `--model`) at every sweep point, with the
    study's recipe for it (`train` + `train.per_model`), and test each on the real test split.

    Points: `sweep.real_per_class` (real-only sets of k images per class, drawn from
    `paths.prepared`/pool, the train split before `prepare.train_per_class` thinned it,
    exactly as `prepare.train_per_class` draws, so the sets are nested) and
    `sweep.ratios` (`sweep.ratio_variant` re-composed with that many synthetic images per real
    one), each for every seed in `sweep.seeds`, and for `sweep.when_models` the "when" points
    (`sweep.when_variants` re-composed on each `sweep.when_per_class` split alone, synthetic
    sets from generators trained on that split). k <= `sweep.low_data_k`: `low_data_seeds`.
    The study's own cells fill in k = prepare.train_per_class and the variant's own ratio.

    On a CPU the points of all the models run in one queue over `sweep.workers` processes (0:
    one per core, at most 4), each with its share of the threads, the longest jobs first:
    small networks keep two cores only partly busy, and a queue of short jobs keeps both busy
    to the end.

    Writes `paths.sweep/MODEL/results.json` per model (one row per point, in the order of the
    points) atomically, once every point has finished; `synthaug report` draws the curves.

    **Examples**

    ```
    synthaug sweep
    synthaug sweep --model cnn -S 'sweep.ratios=[0.5, 1.0, 2.0]'
    ```
    """
    p = params_from(params, set_)
    from tqdm.auto import tqdm

    from synthaug.pipeline.core.device import pick_device
    from synthaug.pipeline.core.errors import SynthaugError

    if model is not None and model not in p.sweep.models:
        raise SynthaugError(f"--model: {model!r} is not in sweep.models "
                            f"({', '.join(p.sweep.models)})")
    models = [model] if model is not None else list(p.sweep.models)
    from synthaug.pipeline.experiments.sweep import SweepData, points as points_of, todo, write_results

    s = p.sweep
    parts = p.compose.variants[s.ratio_variant].synthetic_parts() if s.ratios else []
    data = SweepData.load(p.paths.prepared, p.paths.synthetic, parts,
                          pool=any(pt.sweep != "ratio" for m in models for pt in points_of(s, m)))
    points, skipped, notes = todo(s, p.compose, models, data.pool)  # k above a class: skipped
    for note in notes:
        say(note)
    device = pick_device(p.train.device)
    from synthaug.pipeline.core.pool import plan
    from synthaug.pipeline.experiments.sweep_run import SweepJob, check_ratios, groups, run

    # fail before any training (a ratio's set is the same for every model: checked once)
    check_ratios([pt for pts in points.values() for pt in pts], data, p.compose, s.ratio_variant)
    variants = sorted({pt.variant for pts in points.values() for pt in pts})
    from synthaug.pipeline.experiments.classic_choice import resolved

    # auto: the when points' classic copies and online_augment use the augment stage's choice
    augment = resolved(p.augment, [p.compose.variants[v] for v in variants if v],
                       p.paths.augmented)
    from synthaug.pipeline.core.executors import Remote  # executor.kind slurm or ray: cells
    remote = (Remote(p.executor, p.paths.checkpoints / "cells" / "sweep", [
        p.paths.prepared, p.paths.synthetic, p.paths.augmented]) if p.executor.kind != "local" else None)
    job = SweepJob(p.train, p.models, p.compose, augment, s.ratio_variant, p.paths.prepared,
                   p.paths.synthetic, parts, data.pool is not None, p.train.device if remote else str(device),
                   functools.partial(when_synthesizer, p, variants))
    workers, threads = plan(len(groups(points, p.compose)), device.type, s.workers)
    total = sum(map(len, points.values()))
    say(f"sweep {', '.join(models)}: {total} point(s) on {device}"
        + (f", {p.executor.kind} cells" if remote else
           f", {workers} worker processes of {threads} thread(s)" if workers > 1 else ""))
    rows: dict[str, list] = {m: [None] * len(points[m]) for m in models}
    bar = tqdm(total=total, disable=None if progress else True, unit="point")
    for m, i, row in run(job, points, workers, threads, remote):
        rows[m][i] = row
        bar.update()
        say(f"{m}: {row['sweep']} {row['variant']} {row['value']:>6} seed {row['seed']}: "
            f"{row['train_images']:5d} images, test accuracy {row['accuracy']:.4f} "
            f"({row['train_seconds']:.1f} s)")
    bar.close()
    for m in models:
        say(f"-> {write_results(p.paths.sweep, m, rows[m], skipped[m])}")
    return model  # the timing file: paths.timings/sweep.json (--model M: sweep/M.json)


def when_synthesizer(p, variants: list[str], val, device):
    """The when points' synthetic sets: generators trained per k (generators.lowdata); called
    in each sweep worker (it pickles as a partial of this module's function)."""
    names = sorted({s for v in variants if v for s in p.compose.variants[v].synthetic_parts()})
    if not names:
        return None
    from synthaug.generators.lowdata import synthesizer

    return synthesizer(names, p.sample.sets, p.train_generator, val, p.sample.per_class,
                       p.sample.batch_size, p.sample.seed, device, log=say,
                       pretrained=p.sample.pretrained)
