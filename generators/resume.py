"""Resuming a killed generator run: its identity, and atomic checkpoints that are checked on read.

A checkpoint is the trainer's whole `state_dict()` plus the run's `key` (the family config,
the shared settings that change results, and the training data's content hash). A rerun with
the same key continues bit for bit; another key, or a checkpoint that cannot be read, starts
over with a note instead of failing on every rerun. A drawing run (a pretrained pipeline's
set) keeps its finished batches instead (`KeptBatches`), under the same rules.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from synthaug.generators.config import TrainGeneratorConfig

# shared settings that change neither the result nor the run's identity
NOT_HASHED = ("device", "threads", "log_every", "checkpoint_every", "grid_every", "grid_per_class")


def run_key(family: str, cfg: TrainGeneratorConfig, train_hash: str) -> str:
    """Identity of a run: the family's config, the shared settings that matter, the data."""
    shared = cfg.model_dump(mode="json", exclude={*NOT_HASHED, "gan", "vae", "diffusion"})
    blob = json.dumps({"family": family, "config": cfg.family(family).model_dump(mode="json"),
                       "shared": shared, "data": train_hash}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def save_checkpoint(path: Path, key: str, state: dict) -> None:
    """Write-then-rename: a kill mid-write leaves the previous checkpoint intact. Serialised in
    memory first, so that a full disk is a plain OSError here (torch.save's own writer reports
    it as "file write failed"): then the partial file goes and the error is one line."""
    import io

    import torch

    from synthaug.pipeline.core.outputs import no_space_error
    from synthaug.pipeline.core.outputs import NO_SPACE

    buffer = io.BytesIO()
    torch.save({"key": key, **state}, buffer)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in NO_SPACE:
            raise no_space_error(path, buffer.getbuffer().nbytes) from None
        raise


def unreadable(path: Path, e: BaseException) -> str:
    """The warning for a resume checkpoint that cannot be used: the file, why, what happens."""
    why = (str(e).strip().splitlines() or [""])[0][:120]
    return (f"warning: {path}: unreadable checkpoint ({type(e).__name__}"
            f"{': ' + why if why else ''}); starting over")


def load_checkpoint(path: Path, key: str, device) -> tuple[dict | None, str]:
    """(state, note): the state to resume from, or None with the reason to start over."""
    import torch

    if not path.is_file():
        return None, ""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated, foreign or junk file: any unpickling error
        return None, unreadable(path, e)
    if not isinstance(state, dict) or state.get("key") != key:
        return None, f"config or data changed since {path} was written: starting over"
    if type(state.get("step")) is not int or state["step"] < 0:
        return None, unreadable(path, ValueError(f"step {state.get('step')!r}"))
    return state, f"resuming from step {state['step']} ({path})"


class KeptBatches:
    """A drawing run's finished batches in `folder`, one file each (batch_<first index>.npz of
    named arrays of one length) beside the run's `key` (key.json). `load` gives back a killed
    run's batches when the key is the same, in order, up to the first gap or unreadable file;
    whatever else the folder holds goes, and the next batch is written after them."""

    KEY_FILE = "key.json"

    def __init__(self, folder: Path, key: str):
        self.folder, self.key = Path(folder), key

    @staticmethod
    def _start(path: Path) -> int:
        """A batch file's first index; anything else: a huge number (not a kept batch)."""
        stem = path.name.removeprefix("batch_").removesuffix(".npz")
        return int(stem) if path.name.endswith(".npz") and stem.isdigit() else 2**62

    def load(self, log=lambda line: None) -> list[dict[str, np.ndarray]]:
        kept, done = [], 0
        try:
            same = json.loads((self.folder / self.KEY_FILE).read_text()).get("key") == self.key
        except (OSError, ValueError, AttributeError):
            same = False
        if same:
            try:
                for path in sorted(self.folder.glob("batch_*.npz")):
                    with np.load(path) as z:
                        arrays = {k: z[k] for k in z.files}
                    if self._start(path) != done or len({len(a) for a in arrays.values()}) != 1:
                        break  # a gap or a foreign file: keep what is contiguous
                    kept.append(arrays)
                    done += len(next(iter(arrays.values())))
            except (OSError, ValueError, KeyError) as e:
                log(f"warning: {self.folder}: unreadable batch ({type(e).__name__}); drawing "
                    f"from {done} on")
            if kept:
                log(f"resuming after {done} images ({self.folder})")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in self.folder.iterdir():  # past the contiguous run, or half-written
            if path.name != self.KEY_FILE and self._start(path) >= done:
                path.unlink()
        (self.folder / self.KEY_FILE).write_text(json.dumps({"key": self.key}) + "\n")
        return kept

    def keep(self, start: int, **arrays: np.ndarray) -> None:
        """Write-then-rename: a kill mid-write leaves no half batch."""
        path = self.folder / f"batch_{start:07d}.npz"
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def close(self) -> None:
        """The run's output is written: its kept batches go."""
        shutil.rmtree(self.folder, ignore_errors=True)
