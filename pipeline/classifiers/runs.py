"""One id per training run of a study cell, and the check that a cell's files share it.

A cell's model folder, training log and test metrics live in three folders (three DVC outs,
under paths.models, paths.train_metrics and paths.evaluate_metrics), each written atomically
but not all three at once: a kill between two of the renames leaves a new folder beside old
ones. So each carries the run's id (`run_id`: config.json of the model, the training log's
summary metrics.json, the test metrics.json), and every reader that uses more than one of
them checks that the ids agree (`check_cell`); a mismatch is one line naming both files and
the command that makes them whole again.

The id is a content hash of the trained weights and the run's record (recipe, training set),
so the same params and seed give the same id (training is deterministic on CPU): a rerun
that changes nothing keeps every file byte-identical. Light module: no torch at import.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from synthaug.pipeline.core.errors import SynthaugError

RUN_ID = "run_id"
LENGTH = 16  # hex digits


def make_run_id(state_dict, record: dict) -> str:
    """The id of a run that produced the weights `state_dict` (name -> tensor) under
    `record` (JSON-able: the recipe, the training set's content hash, ...)."""
    import torch

    h = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode())
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())  # the bytes, whatever the dtype
    return h.hexdigest()[:LENGTH]


def _id_in(file: Path) -> tuple[bool, str | None]:
    """(the file exists, the run id it records: None for files written before run ids)."""
    if not file.is_file():
        return False, None
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SynthaugError(f"{file}: cannot be read as JSON ({e}); rerun the stage that "
                            "wrote it") from None
    return True, data.get(RUN_ID) if isinstance(data, dict) else None


def cell_files(model_dir: Path | None, log_dir: Path | None,
               metrics_dir: Path | None) -> list[Path]:
    """The three files of a cell that carry its run id (those whose folder is given)."""
    return [d / name for d, name in ((model_dir, "config.json"), (log_dir, "metrics.json"),
                                     (metrics_dir, "metrics.json")) if d is not None]


def check_cell(model_dir: Path | None, log_dir: Path | None, metrics_dir: Path | None,
               rerun: str) -> str | None:
    """The run id the cell's existing files agree on (None: none of them records one).

    A SynthaugError (one line: both files, both ids, `rerun`) when two of them come from
    different runs. Missing files are not this check's business: the callers say what to do
    when a file they need is absent."""
    seen: list[tuple[Path, str | None]] = []
    for f in cell_files(model_dir, log_dir, metrics_dir):
        exists, rid = _id_in(f)
        if exists:
            seen.append((f, rid))
    for f, rid in seen[1:]:
        first, first_id = seen[0]
        if rid != first_id:
            raise SynthaugError(
                f"{f} (run {rid or 'without an id'}) and {first} (run {first_id or 'without an id'}) "
                f"come from different training runs (a run was cut short while saving); "
                f"rerun `{rerun}` (or `dvc repro`)")
    return seen[0][1] if seen else None


def rerun_command(variant: str, model: str) -> str:
    """The command that rewrites a study cell's three folders together."""
    return f"synthaug train --variant {variant} --model {model} --study-seeds"


def write_summary(out: Path, scores: dict[str, dict[str, dict]]) -> dict[str, float]:
    """A cell's test scores, model -> seed -> scores (with run ids), in one file `out` (a row
    of `dvc metrics show`: `cnn.accuracy_mean`, `cnn.seed0.accuracy`, ...), atomically; models
    already in the file and not in `scores` (trained by an earlier `--model` run) are kept.
    Returns each model's mean test accuracy."""
    from synthaug.pipeline.core.outputs import atomic_output

    try:
        kept = json.loads(out.read_text()) if out.is_file() else {}
    except (OSError, ValueError):
        kept = {}
    means = {m: sum(row["accuracy"] for row in seeds.values()) / len(seeds)
             for m, seeds in scores.items()}
    rows = {**(kept if isinstance(kept, dict) else {}),
            **{m: {"accuracy_mean": means[m], **seeds} for m, seeds in scores.items()}}
    with atomic_output(out, is_dir=False) as f:
        f.write_text(json.dumps(dict(sorted(rows.items())), indent=2) + "\n")
    return means


def write_summaries(root: Path, scores: dict[str, dict[str, dict[str, dict]]]) -> list[str]:
    """`write_summary` of every variant of `scores` (variant -> model -> seed -> scores) into
    `root`/VARIANT.json; a line for the user per variant and model."""
    lines = []
    for variant, by_model in scores.items():
        for m, mean in write_summary(out := root / f"{variant}.json", by_model).items():
            lines.append(f"{variant} / {m}: mean test accuracy {100 * mean:.1f}% "
                         f"({len(by_model[m])} seeds) -> {out}")
    return lines


def study_runs(models: list, variants: list, seeds: list) -> list[tuple]:
    """The (variant, model, seed) runs, the transfer models' first (the long ones), so that
    in a queue the short runs fill the end."""
    from synthaug.pipeline.classifiers.names import model_kind

    models = sorted(models, key=lambda m: model_kind(m) != "transfer")
    return [(v, m, s) for m in models for v in variants for s in seeds]
