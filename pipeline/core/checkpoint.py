"""Model folders: `config.json` (everything needed to rebuild) + `weights.safetensors`.

No pickle: a folder loads without params.yaml and without trusting arbitrary code.
Shared by classifiers and (later) generators.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipeline.core.errors import SynthaugError


def save_folder(folder: Path, config: dict, state_dict: dict[str, torch.Tensor]) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(folder / "weights.safetensors"))


def load_folder(folder: Path, device: str | torch.device = "cpu") -> tuple[dict, dict]:
    folder = Path(folder)
    cfg, weights = folder / "config.json", folder / "weights.safetensors"
    if not cfg.is_file() or not weights.is_file():
        raise SynthaugError(f"{folder}: not a model folder (needs config.json and "
                            "weights.safetensors); run `synthaug train` first?")
    return json.loads(cfg.read_text()), load_file(str(weights), device=str(device))
