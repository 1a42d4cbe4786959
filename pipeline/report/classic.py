"""The report's lines on the classic augmentation that `augment.pipeline: auto` chose on the
val split (pipeline/experiments/classic_choice.py writes the record)."""
from __future__ import annotations

import json
from pathlib import Path

from synthaug.pipeline.augment.config import CHOICE_RECORD


def read_choice(folder: Path) -> dict | None:
    """The record `synthaug augment` wrote under `folder` (paths.augmented), None without one
    (an explicit preset or step list writes none)."""
    f = Path(folder) / CHOICE_RECORD
    return json.loads(f.read_text()) if f.is_file() else None


def lines(record: dict) -> list[str]:
    """What was chosen, on what, and every candidate's val scores (a table)."""
    seeds = record["seeds"]
    rows = [f"| {c['name']}{' (chosen)' if c['name'] == record['chosen'] else ''} | "
            f"{100 * c['mean']:.1f} | " + ", ".join(f"{100 * a:.1f}" for a in c["val_accuracy"])
            + " |" for c in record["candidates"]]
    return [f"Classic augmentation (`real+classic`): **{record['chosen']}**, chosen on the val "
            f"split ({record['val_images']} images: one is {100 / record['val_images']:.1f} "
            f"points) from {len(rows)} candidates by the mean val "
            f"accuracy of `{record['model']}` trained on the real images plus each candidate's "
            f"copies (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}; the "
            "test split is not read; `none` is no augmentation).", "",
            "| candidate | mean val accuracy % | per seed |", "|---|---|---|", *rows, ""]
