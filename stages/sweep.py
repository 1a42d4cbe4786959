"""`synthaug sweep`: accuracy against real images per class and against the synthetic ratio."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from stages.common import ModelOpt, ParamsOpt, SetOpt, params_from, say, user_errors


@user_errors
def command(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            model: ModelOpt = None,
            progress: Annotated[bool, typer.Option(help="progress bar (on a terminal)")] = True,
            ) -> None:
    """Train `--model` (default: the first of `sweep.models`) at every sweep point, with the
    study's recipe for it (`train` + `train.per_model`), and test each on the real test split.

    Points: `sweep.real_per_class` (real-only sets of k images per class, drawn from the full
    train pool exactly as `prepare.train_per_class` draws, so the sets are nested) and
    `sweep.ratios` (`sweep.ratio_variant` re-composed with that many synthetic images per real
    one), each for every seed in `sweep.seeds`. The study's own cells fill in
    k = prepare.train_per_class and the variant's own ratio, so those need no point here.

    Writes `paths.sweep/MODEL/results.json` (one row per point) atomically;
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
    from pipeline.data.storage import atomic_output, is_dataset, read_dataset
    from pipeline.evaluation.sweep import points, results_path, run

    real, val, test = (read_dataset(p.paths.prepared / s, mmap=False)
                       for s in ("train", "val", "test"))
    synthetic = {}
    if p.sweep.ratios:
        for part in p.compose.variants[p.sweep.ratio_variant].synthetic_parts():
            folder = p.paths.synthetic / part
            if not is_dataset(folder):
                raise SynthaugError(f"{folder}: set {part!r} of sweep.ratio_variant is missing; "
                                    f"run `synthaug sample {part}` (or `dvc repro`) first")
            synthetic[part] = read_dataset(folder, mmap=False)
    todo = points(p)
    device = pick_device(p.train.device)
    say(f"sweep {model}: {len(todo)} point(s) on {device}")
    rows = []
    bar = tqdm(total=len(todo), disable=None if progress else True, unit="point")
    for row in run(p, model, device, real, val, test, synthetic, todo):
        rows.append(row)
        bar.update()
        say(f"{row['sweep']} {row['value']:>6} seed {row['seed']}: {row['train_images']:5d} "
            f"images, test accuracy {row['accuracy']:.4f} ({row['train_seconds']:.1f} s)")
    bar.close()
    out = results_path(p, model)
    with atomic_output(out, is_dir=False) as f:
        f.write_text(json.dumps({"model": model, "rows": rows}, indent=1) + "\n")
    say(f"-> {out}")

