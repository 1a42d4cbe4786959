"""`synthaug crossval`: the study cross-validated over every labelled image (small data)."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import (ParamsOpt, SetOpt, params_from, params_unchanged, say,
                                    user_errors)


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bar (on a terminal)")] = True,
            ) -> None:
    """Run the study's comparison under the protocol `study.protocol` picks: on a small data
    set (auto: the prepared test split holds fewer than 30 images of some class) repeated
    stratified k-fold cross-validation over every labelled image; on larger data it records
    that the single holdout (the train stage's cells) was chosen, and why, and trains nothing.

    k-fold: `study.folds` folds x `study.repeats` repeats (units). Per unit, the other folds
    give a val split (`prepare.val_fraction`) and a train pool; `prepare.train_per_class`
    images per class are drawn from the pool (auto: resolved per unit as prepare resolves it),
    the rest held back for `more-real`; every variant of `study.variants` is composed on that
    split alone (classic copies, generators of its synthetic sets trained on it, as the
    sweep's when points do), every model of `study.models` trained with the unit's own seed
    and tested on the unit's fold. A variant some unit cannot compose is skipped with a note.

    Writes `paths.crossval`/results.json: the protocol and its rule, and one row per unit,
    variant and model with every test prediction; `synthaug report` pairs them per image and
    unit (corrected t-test, MDE). On a CPU the units' jobs share `study.workers` processes.

    **Examples**

    ```
    synthaug crossval
    synthaug crossval -S study.protocol=kfold -S study.folds=3
    ```
    """
    p = params_from(params, set_)
    import numpy as np
    from tqdm.auto import tqdm

    from synthaug.pipeline.core.device import pick_device
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.core.pool import plan
    from synthaug.pipeline.data.prepare import read_pool
    from synthaug.pipeline.data.storage import read_dataset
    from synthaug.pipeline.experiments import crossval as cv
    from synthaug.pipeline.experiments.protocol import choose
    from synthaug.stages.sweep import when_synthesizer

    test = read_dataset(p.paths.prepared / "test")
    protocol, why = choose(p.study.protocol, np.bincount(test.labels,
                                                            minlength=len(test.class_names)))
    say(why)
    device = pick_device(p.train.device)
    from synthaug.pipeline.core.executors import Remote  # executor.kind slurm or ray: cells

    remote = (Remote(p.executor, p.paths.checkpoints / "cells" / "crossval", [p.paths.prepared])
              if p.executor.kind != "local" else None)
    # augment.pipeline auto: each unit chooses its classic preset on its own val split
    job = cv.FoldJob(p.train, p.models, p.compose, p.augment, p.paths.prepared,
                     list(p.study.variants), list(p.study.models), p.study.folds,
                     p.study.repeats, p.prepare.seed, p.prepare.val_fraction,
                     p.prepare.train_per_class, p.train.device if remote else str(device),
                     functools.partial(when_synthesizer, p, list(p.study.variants)))
    rows, skipped, n = [], [], len(test)
    if protocol == "kfold":
        labels = np.concatenate([read_pool(p.paths.prepared).labels, read_dataset(
            p.paths.prepared / "val").labels, test.labels])
        n, skipped = len(labels), cv.skips(job, labels, list(test.class_names))
        for s in skipped:
            say(f"note: crossval skips {s['variant']}: {s['reason']}")
        gone = {s["variant"] for s in skipped}
        todo = cv.jobs(job, [v for v in job.variants if v not in gone])
        workers, threads = plan(len(todo), device.type, p.study.workers)
        total = sum(len(t[1]) for t in todo)
        say(f"crossval: {p.study.folds} folds x {p.study.repeats} repeat(s) over {n} labelled "
            f"images, {total} fits in {len(todo)} jobs, "
            + (f"{p.executor.kind} cells" if remote else f"{workers} process(es)"))
        bar = tqdm(total=total, disable=None if progress else True, unit="fit")
        for row in cv.run(job, todo, workers, threads, remote):
            rows.append(row)
            bar.update()
            say(f"unit r{row['repeat']}f{row['fold']} {row['variant']} {row['model']}: "
                f"test accuracy {row['accuracy']:.4f} ({row['train_seconds']:.1f} s)")
        bar.close()
    with atomic_output(p.paths.crossval) as out:
        (out / "results.json").write_text(json.dumps(cv.record(job, protocol, why, rows,
                                                                skipped, n)) + "\n")
        params_unchanged()  # params.yaml edited meanwhile: not committed
    say(f"-> {p.paths.crossval / 'results.json'}")
