"""`synthaug sweep`: accuracy against real images per class and against the synthetic ratio."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOpt, SetOpt, params_from, say, user_errors

ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="model: one of sweep.models [default: the first]")]


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            model: ModelOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bar (on a terminal)")] = True,
            ) -> str:
    """Train `--model` (default: the first of `sweep.models`) at every sweep point, with the
    study's recipe for it (`train` + `train.per_model`), and test each on the real test split.

    Points: `sweep.real_per_class` (real-only sets of k images per class, drawn from
    `paths.prepared`/pool, the train split before `prepare.train_per_class` thinned it,
    exactly as `prepare.train_per_class` draws, so the sets are nested) and
    `sweep.ratios` (`sweep.ratio_variant` re-composed with that many synthetic images per real
    one), each for every seed in `sweep.seeds`, and for `sweep.when_models` the "when" points
    (`sweep.when_variants` re-composed on each `sweep.when_per_class` split alone, synthetic
    sets from generators trained on that split). k <= `sweep.low_data_k`: `low_data_seeds`.
    The study's own cells fill in k = prepare.train_per_class and the variant's own ratio.

    On a CPU the points run in `sweep.workers` processes (0: one per core, at most 4), each
    with its share of the threads: small networks keep two cores only partly busy.

    Writes `paths.sweep/MODEL/results.json` (one row per point, in the order of the points)
    atomically, once every point has finished;
    `synthaug report` draws the curves.
    """
    p = params_from(params, set_)
    from tqdm.auto import tqdm

    from pipeline.core.device import pick_device
    from pipeline.core.errors import SynthaugError

    model = model or p.sweep.models[0]
    if model not in p.sweep.models:
        raise SynthaugError(f"--model: {model!r} is not in sweep.models "
                            f"({', '.join(p.sweep.models)})")
    from pipeline.data.outputs import atomic_output
    from pipeline.evaluation.sweep import SweepData, feasible, points, results_path

    s = p.sweep
    parts = p.compose.variants[s.ratio_variant].synthetic_parts() if s.ratios else []
    todo = points(s, model)
    data = SweepData.load(p.paths.prepared, p.paths.synthetic, parts,
                          pool=any(pt.sweep != "ratio" for pt in todo))
    todo, skipped = feasible(todo, data.pool, p.compose)  # k above the smallest class: skipped
    for skip in skipped:
        say(f"note: sweep skips {skip['sweep']} {skip['variant']} k={skip['value']}: {skip['reason']}")
    device = pick_device(p.train.device)
    from pipeline.core.pool import plan
    from pipeline.evaluation.sweep_run import SweepJob, check_ratios, groups, run

    check_ratios(todo, data, p.compose, s.ratio_variant)  # fail before any training

    job = SweepJob(model, p.train, p.models, p.compose, p.augment, s.ratio_variant,
                   p.paths.prepared, p.paths.synthetic, parts, data.pool is not None, str(device),
                   functools.partial(_synthesizer, p, sorted({pt.variant for pt in todo})))
    workers, threads = plan(len(groups(todo, p.compose)), device.type, s.workers)
    say(f"sweep {model}: {len(todo)} point(s) on {device}"
        + (f", {workers} worker processes of {threads} thread(s)" if workers > 1 else ""))
    rows: list[dict | None] = [None] * len(todo)
    bar = tqdm(total=len(todo), disable=None if progress else True, unit="point")
    for i, row in run(job, todo, workers, threads):
        rows[i] = row
        bar.update()
        say(f"{row['sweep']} {row['variant']} {row['value']:>6} seed {row['seed']}: {row['train_images']:5d} "
            f"images, test accuracy {row['accuracy']:.4f} ({row['train_seconds']:.1f} s)")
    bar.close()
    out = results_path(p.paths.sweep, model)
    with atomic_output(out, is_dir=False) as f:
        f.write_text(json.dumps({"model": model, "rows": rows, "skipped": skipped}, indent=1) + "\n")
    say(f"-> {out}")
    return model  # the cell of the timing file


def _synthesizer(p, variants: list[str], val, device):
    """The when points' synthetic sets: generators trained per k (generators.lowdata); called
    in each sweep worker (it pickles as a partial of this module's function)."""
    names = sorted({s for v in variants if v for s in p.compose.variants[v].synthetic_parts()})
    if not names:
        return None
    from generators.lowdata import synthesizer

    return synthesizer(names, p.sample.sets, p.train_generator, val, p.sample.per_class,
                       p.sample.batch_size, p.sample.seed, device, log=say)
