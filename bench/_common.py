"""What the benches share: the machine line, the best-of-N rate, the `--tiny` flag and the
closing ratio line. Not a bench itself (the leading underscore keeps it out of `.ci/run`'s
loop over bench/[!_]*.py).

Every bench prints, first, `machine: ...` (CPU model, usable cores, the ISA that decides
torch's CPU speed, GPU) and, last, a line that starts with `ratio ` (RATIO): its headline
figure against the baseline measured in the same run. `--tiny` runs the same code on tiny
sizes, steps and repeats in a few seconds: CI checks only that it ran and printed that line,
not the speed.
"""
from __future__ import annotations

import argparse
import sys
import time

RATIO = "ratio "  # the closing line's start, checked by .ci/run
TINY_HELP = "the same code on tiny sizes, steps and repeats, in seconds (CI): speed not checked"


def add_tiny(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--tiny", action="store_true", help=TINY_HELP)


def machine() -> str:
    """`machine: AMD EPYC, 2 cores; ISA: AVX2 (no AVX-512, no bf16, no AMX); no GPU; torch
    2.x, 2 threads`: the project's own CPU description (pipeline.core.timing) with the cores
    this process may use (pipeline.core.pool.usable_cores) and the CUDA device, if any."""
    from synthaug.pipeline.core.pool import usable_cores
    from synthaug.pipeline.core.timing import cpu_info, isa_cap
    from synthaug.pipeline.report.timings import machine as describe

    m = {**cpu_info(), "usable_cores": usable_cores(), "isa_cap": isa_cap(), "gpu": None}
    flags = [f for f, on in (m.get("isa") or {}).items() if on]
    torch = sys.modules.get("torch")
    if torch is None:
        import torch
    if torch.cuda.is_available():
        m["gpu"] = {"name": torch.cuda.get_device_name(0)}
    return (f"machine: {describe(m)}; flags {' '.join(flags) or 'none'}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def best_rate(fn, n: int, repeats: int) -> float:
    """n / the fastest of `repeats` calls of fn, in items per second."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def ratio(text: str) -> None:
    """The closing line: `ratio <text>`."""
    print(f"{RATIO}{text}", flush=True)
