"""`synthaug check`: every problem the params and the data show, before any work."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import ParamsOpt, SetOpt, params_from, say, user_errors

RECORD = {"ok": True}  # constant: a passing check never makes `dvc repro` rerun prepare


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            out: Annotated[Path, typer.Option(
                "--out", help="where a passing check writes its record (prepare's dvc dep)",
                metavar="FILE")] = Path("metrics/check.json"),
            ) -> None:
    """Check the params against the data before any work, and name every problem at once:
    one `error:` line each, with its fix, then exit code 2.

    Reads params.yaml and, as far as they exist, the source and the prepared data: the train
    pool's class counts come from `paths.prepared` when the current `prepare` params made it,
    else from the source's labels or file counts (no image is decoded). Checks
    `prepare.train_per_class` against the smallest class, every variant of `study.variants`
    (its `ratio` / `per_class` against what its parts will hold: `sample.per_class` per set,
    the pool beyond the train split for `more-real`), the sweep's ratio and when points.
    A `sweep.real_per_class` or `sweep.when_per_class` k above the smallest class is no
    error: the sweep skips it, and a note says so. `prepare.train_per_class: auto` (the
    default) is resolved from the class counts, and a note says which k and why. Then it
    prints the plan (study cells, sweep and when points, generators) and an estimate of the
    study's time on this machine, with its basis (an earlier sweep's measured fits here, or
    constants measured on a named CPU). `dvc repro` runs this stage first.

    **Examples**

    ```
    synthaug check
    synthaug check -S prepare.train_per_class=200 -S sample.per_class=300
    synthaug check --params my-params.yaml
    ```
    """
    p = params_from(params, set_)
    from synthaug.pipeline.data.counts import pool_counts
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.experiments.checks import check, model_fit

    counts, problems = pool_counts(p.prepare, p.paths.prepared)
    sizes = {name: s.per_class or p.sample.per_class for name, s in p.sample.sets.items()}
    found = check(p.prepare, p.compose, p.study, p.sweep, sizes, counts)
    trained = {p.quality.model: "quality.model", p.train.model: "train.model",  # a model in
               **{m: "sweep.models" for m in p.sweep.models},  # several: the last one named
               **{m: "study.models" for m in p.study.models}}
    found.problems += model_fit(trained, p.models, p.prepare,
                                len(counts.class_names) if counts else 10)
    if drawn := [n for n, s in p.sample.sets.items() if s.generator == "pretrained"]:
        from synthaug.generators.pretrained_config import missing  # files only

        found.problems += [m] if (m := missing(p.sample.pretrained)) else []
        found.notes.append(f"pretrained sets ({', '.join(drawn)}) draw from "
                           f"{p.sample.pretrained.model} on sample.device: not in the estimate")
    for note in found.notes:
        say(f"note: {note}")
    for line in _plan(p, counts, found.k):
        say(f"plan: {line}")
    if problems := problems + found.problems:
        for line in problems:
            typer.echo(f"error: {line}", err=True)
        say(f"check: {len(problems)} problem(s); fix them and run `synthaug check` again")
        raise typer.Exit(2)
    with atomic_output(out, is_dir=False) as f:
        f.write_text(json.dumps(RECORD) + "\n")
    say(f"check: no problems -> {out}")


def _plan(p, counts, k: int | None) -> list[str]:
    """What the study will run and about how long it takes here (pipeline.experiments.plan)."""
    from synthaug.pipeline.classifiers.config import recipe
    from synthaug.pipeline.classifiers.names import model_kind
    from synthaug.pipeline.core.timing import cpu_info
    import numpy as np

    from synthaug.pipeline.experiments.plan import (estimate, make_plan, measured_fits,
                                                    recipe_samples, with_crossval)

    families = {f: p.train_generator.family(f).total_steps for f in ("gan", "vae", "diffusion")}
    trained = {name: s.generator for name, s in p.sample.sets.items()
               if s.generator in families}  # a pretrained pipeline's sets: nothing trains
    from synthaug.generators.pretrain_config import when_family

    tg = p.train_generator  # a when point's trainings: on the split, with the pool, pretrained
    when_steps = {tag: {f: when_family(tg.family(f), tag).total_steps for f in families}
                  for tag in ("", "unlabelled", "pretrain")}
    plan = make_plan(p.study, p.sweep, p.compose, families, trained,
                     counts.pool if counts else None, counts.class_names if counts else None,
                     p.augment, when_steps)
    test = None  # the test split's images per class, from the pool's (prepare's fractions)
    if counts is not None:
        f = p.prepare
        test = np.round(counts.pool * f.test_fraction / (1 - f.val_fraction - f.test_fraction))
    plan = with_crossval(plan, p.study, p.compose, families, trained, test, p.augment)
    classes = len(counts.class_names) if counts else 10
    images = (k or (int(counts.pool.min()) if counts else 50)) * classes * 2  # real + drawn
    recipes = {}
    for m in {*p.study.models, *p.sweep.models, *plan.classic}:
        r = recipe(p.train, m, 0)
        transfer = model_kind(m, p.models) == "transfer"
        recipes[m] = (recipe_samples(r.epochs, r.epoch_size, images),
                      r.input_size if transfer else p.prepare.size, transfer)
    _, lines = estimate(plan, recipes, p.prepare.size, cpu_info(),
                        measured_fits(p.paths.sweep, recipes))
    from synthaug.pipeline.experiments.plan import fan_out

    return plan.lines() + [fan_out(plan, p.sweep, p.compose, counts.pool if counts else None,
                                   counts.class_names if counts else None,
                                   len(p.sample.sets) + 2)] + lines
