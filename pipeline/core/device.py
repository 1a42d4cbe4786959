"""Device choice and seeding; called by stages, passed into library functions."""
from __future__ import annotations

import random
import sys

import numpy as np
import torch

from synthaug.pipeline.core.errors import SynthaugError


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: cuda, then mps, then cpu. An explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SynthaugError(f"device {name!r}: CUDA is not available here; use device: auto or cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SynthaugError(f"device {name!r}: MPS is not available here; use device: auto or cpu")
    return dev


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy and torch; return a torch.Generator for the caller's own draws."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # CPU kernels are deterministic; this also makes CUDA pick deterministic ones where
        # they exist (warn_only: a few CUDA ops have none, we'd rather train than crash)
        # (the public torch.use_deterministic_algorithms also sets torch.compile's flag, and
        # importing torch._inductor for that costs ~3.5 s per process: only when it is loaded)
        if "torch._inductor.config" in sys.modules:
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch._C._set_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        # deterministic mode also NaN-fills every new tensor (a debugging aid for kernels
        # that read memory they never wrote): ~10% of a small CNN's CPU step, same results
        torch.utils.deterministic.fill_uninitialized_memory = False
    g = torch.Generator()
    g.manual_seed(seed)
    return g
