"""Model folders: `config.json` (everything needed to rebuild) + `weights.safetensors`.

No pickle: a folder loads without params.yaml and without trusting arbitrary code. Shared by
classifiers and generators. Reading checks the files (a config that is not a JSON object, a
truncated or foreign weights file: one SynthaugError naming the file); the loaders check the
config's keys and that the weights fit it. A full disk while saving is an OSError(ENOSPC)
naming the file, as from any other write (pipeline.core.outputs turns it into one line).
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from synthaug.pipeline.core.errors import SynthaugError

RETRAIN = "rerun the stage that wrote it (or `dvc repro`)"


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def save_folder(folder: Path, config: dict, state_dict: dict[str, torch.Tensor]) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    weights = folder / "weights.safetensors"
    try:
        save_file(tensors, str(weights))
    except Exception as e:  # safetensors reports I/O errors as its own type, errno in the text
        text = str(e)
        if "No space left" in text or "StorageFull" in text or "code: 28" in text:
            err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(weights))
            err.need = sum(t.numel() * t.element_size() for t in tensors.values())
            raise err from None
        raise


def load_folder(folder: Path, device: str | torch.device = "cpu") -> tuple[dict, dict]:
    """(config, weights) of model folder `folder`, each file checked as it is read."""
    folder = Path(folder)
    cfg, weights = folder / "config.json", folder / "weights.safetensors"
    if not cfg.is_file() or not weights.is_file():
        raise SynthaugError(f"{folder}: not a model folder (needs config.json and "
                            "weights.safetensors); run `synthaug train` first?")
    try:
        config = json.loads(cfg.read_text())
    except ValueError as e:  # not JSON, or not UTF-8
        raise SynthaugError(f"{cfg}: not valid JSON ({first_line(e)}); {RETRAIN}") from None
    if not isinstance(config, dict):
        raise SynthaugError(f"{cfg}: not a JSON object; {RETRAIN}")
    try:
        tensors = load_file(str(weights), device=str(device))
    except Exception as e:  # truncated, empty or foreign file: safetensors' own error type
        raise SynthaugError(f"{weights}: unreadable safetensors file ({first_line(e)}); "
                            f"{RETRAIN}") from None
    return config, tensors


def fit_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load `weights` (read from `path`) into `model`, strictly; weights that do not fit the
    architecture are one SynthaugError naming the file and the first mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} is {list(weights[k].shape)}, the model's {list(v.shape)}"
              for k, v in own.items() if k in weights and weights[k].shape != v.shape]
    def first(what: str, keys: list[str]) -> str:
        return f"{what} {keys[0]}" + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")

    problem = (first("missing", missing) if missing else first("unexpected", unexpected)
               if unexpected else shapes[0] if shapes else None)
    try:
        if problem is None:
            model.load_state_dict(weights, strict=True)
    except RuntimeError as e:  # e.g. a dtype that cannot be copied
        problem = first_line(e)
    if problem is not None:
        raise SynthaugError(f"{path}: does not fit the architecture in config.json ({problem}); "
                            f"{RETRAIN}")
