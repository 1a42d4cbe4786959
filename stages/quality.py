"""`synthaug quality`: which synthetic sets are worth training on, and which merely copy."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import (ParamsOpt, SetOpt, params_from, params_unchanged, say,
                                    user_errors)


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bars (on a terminal)")] = True) -> None:
    """Score every synthetic set under `sample.sets` against real images no generator saw.

    The reference is held-back train-pool images (else the train split), with the rows `real-val`
    (the real validation split: what a perfect generator scores) and `noise` (the floor).
    Per set: FID-domain / KID-domain (in the judge's penultimate-layer features; not Inception
    FID), FID-lite0 (EfficientNet-Lite0 ImageNet features), precision / recall / density /
    coverage, CAS (a classifier trained on the set alone, tested on real test) and CAS / real,
    judge agreement, near-copies of training images and the classes that fail.

    Writes paths.quality/quality.md (the table, ranks and figures), quality.json (for
    `dvc metrics show`, and what the report shows) and figures/ (FID-domain vs CAS, and each
    set's closest pairs to training images). Needs `synthaug judge` and `synthaug sample` first.
    On a CPU the sets are scored side by side in `quality.workers` one-thread processes.

    **Examples**

    ```
    synthaug quality
    synthaug quality -S quality.cas=false -S quality.imagenet_features=false
    ```
    """
    p = params_from(params, set_)
    from synthaug.pipeline.core.device import pick_device
    from synthaug.pipeline.core.executors import Remote
    from synthaug.pipeline.core.pool import imap, plan
    from synthaug.pipeline.core.outputs import atomic_output
    from synthaug.pipeline.quality.run import SetScorer, sets_to_score
    from synthaug.pipeline.report import quality_page as page
    from synthaug.pipeline.figures.data import quality_scatter
    from tqdm.auto import tqdm

    names = sets_to_score(p)
    q = p.quality
    # each set on its own in a worker (one thread: two one-thread processes beat one of two)
    workers, threads = plan(len(names), pick_device(q.device).type, q.workers)
    if workers > 1 and p.executor.kind == "local":
        say(f"quality: {len(names)} sets in {workers} processes of {threads} thread(s)")
    with atomic_output(p.paths.quality) as tmp:
        (tmp / "figures").mkdir()
        rows: list = [None] * len(names)
        # executor.kind slurm or ray: each set a cell there (the key leaves out this run's tmp)
        remote = Remote(p.executor, p.paths.checkpoints / "cells" / "quality", [
            p.paths.prepared, p.paths.synthetic, p.paths.judge], lambda n: [tmp / "figures" / f"closest_{n}.png"],
            lambda n: (p, n))
        for i, row in tqdm(imap(SetScorer, (p, tmp / "figures"), SetScorer.score, names, workers, threads,
                                remote=remote, say=say),
                           total=len(names), desc="quality", unit="set",
                           disable=None if progress else True):
            rows[i] = row
            say(f"quality {row['name']}: " + "  ".join(
                f"{h} {fmt.format(row[k])}" for k, (h, _, fmt) in page.METRICS.items()
                if row.get(k) is not None))
        reference = [row.pop("reference_name") for row in rows][0]  # the same in every row
        quality_scatter(rows, tmp / "figures" / "fid_vs_cas.png")
        sets = page.record(rows)
        (tmp / "quality.json").write_text(json.dumps(sets, indent=2) + "\n")
        (tmp / "quality.md").write_text(page.page(sets, q.model, q.k, q.copy_threshold,
                                                  p.paths.synthetic, p.paths.quality, reference))
        params_unchanged()  # params.yaml edited meanwhile: not committed
    say(page.table(sets))
    say(f"-> {p.paths.quality / 'quality.md'}")
