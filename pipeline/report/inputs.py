"""Reading what the other stages left for the report: evaluated cells, the prepared splits, the
data sets to show, the composed training sets, the sweep stage's results and quality.json.
Every reader takes the folders it reads; missing files are reported, not raised."""
from __future__ import annotations

import json
from pathlib import Path

from synthaug.pipeline.report.study import SPLITS, Cell, Layout


def cells(layout: Layout, runs: dict[Cell, Path]) -> tuple[dict[Cell, dict], list[str]]:
    """(cell -> metrics.json plus "history", the runs without metrics), in `runs` order.
    A SynthaugError when a cell's test metrics, training log and model folder come from
    different training runs (pipeline.classifiers.runs: a run cut short while saving)."""
    from synthaug.pipeline.classifiers.runs import check_cell, rerun_command

    found, missing = {}, []
    for cell, run in runs.items():
        f = layout.evaluate_metrics / run / "metrics.json"
        if f.is_file():
            check_cell(layout.models / run, layout.train_metrics / run, f.parent,
                       rerun_command(cell[0], cell[1]))
            hist = layout.train_metrics / run / "history.json"
            found[cell] = {**json.loads(f.read_text()),
                           "history": json.loads(hist.read_text()) if hist.is_file() else []}
        else:
            missing.append(str(run))
    return found, missing


def splits(prepared: Path) -> dict:
    """The prepared splits there are, memory-mapped."""
    from synthaug.pipeline.data.storage import is_dataset, read_dataset

    return {s: read_dataset(prepared / s, mmap=True) for s in SPLITS if is_dataset(prepared / s)}


def set_subtitle(generator: str, sampler: str, settings: dict) -> str:
    """`vae / gmm (components=3)`: a synthetic set's panel subtitle."""
    text = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in settings.items())
    return f"{generator} / {sampler}" + (f" ({text})" if text else "")


def panels(layout: Layout, splits: dict, sets: dict[str, str],
           augment_spec: str) -> tuple[list[dict], list[str]]:
    """The sample figure's panels (the real train split, each synthetic set of `sets`: name ->
    subtitle, the classic copies described by `augment_spec`) and the sets not sampled yet."""
    from synthaug.pipeline.data.storage import is_dataset, read_dataset

    def panel(title: str, subtitle: str, ds) -> dict:
        return {"title": title, "subtitle": subtitle, "images": ds.images, "labels": ds.labels,
                "class_names": ds.class_names}

    out, unsampled = [], []
    if "train" in splits:
        out.append(panel("real (train split)", f"{len(splits['train'])} images", splits["train"]))
    for name, subtitle in sets.items():
        folder = layout.synthetic / name
        if not is_dataset(folder):
            unsampled.append(name)
            continue
        out.append(panel(name, subtitle, read_dataset(folder, mmap=True)))
    if is_dataset(layout.augmented):
        ds = read_dataset(layout.augmented, mmap=True)
        copies = ds.meta.get("augment", {}).get("copies_per_image", "?")
        ran = ds.meta.get("augment", {}).get("spec")  # auto: the chosen preset
        out.append(panel("classic augmentation", f"{ran if isinstance(ran, str) else augment_spec}"
                         f", {copies} copies per image", ds))
    return out, unsampled


def training_sets(folder: Path, variants: list[str]) -> dict[str, dict]:
    """variant -> the meta of its composed training set, for those composed."""
    from synthaug.pipeline.data.storage import is_dataset, read_dataset

    return {v: read_dataset(folder / v).meta for v in variants if is_dataset(folder / v)}


def sweep_results(folder: Path, models: list[str]) -> dict[str, dict | None]:
    """model -> the sweep stage's results.json content, None where it has none."""
    out = {}
    for model in models:
        f = folder / model / "results.json"
        out[model] = json.loads(f.read_text()) if f.is_file() else None
    return out


def quality(folder: Path) -> dict | None:
    """The quality stage's record (quality.json), None before it ran."""
    f = folder / "quality.json"
    return json.loads(f.read_text()) if f.is_file() else None
