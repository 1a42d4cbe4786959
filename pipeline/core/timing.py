"""What a run cost and where it ran: wall time, CPU time (this process and its children, user +
system), peak resident memory and the machine, as one JSON-ready dict (`Stopwatch.record`).

CPU seconds over wall seconds is how many cores the run kept busy on average; with the ISA
flags (a CPU with AVX512-BF16 or AMX trains the default study twice as fast) it says whether
two timings are comparable. Torch-free at import: the GPU is named only when torch is loaded
and the run used CUDA, so a light stage does not import torch to say it had no GPU.
"""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
from functools import cache

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _mib(maxrss: int) -> float:
    """ru_maxrss in MiB: kibibytes on Linux, bytes on macOS."""
    return round(maxrss / (2**20 if sys.platform == "darwin" else 2**10), 1)


def cpu_info(cpuinfo: str | None = None) -> dict:
    """CPU model, cores (all, and usable by this process) and the ISA flags that decide its
    speed, from /proc/cpuinfo (`cpuinfo`: its text, for tests); elsewhere the model only."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())  # the first core speaks for all
    flags = set(fields.get("flags", fields.get("Features", "")).split())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": fields.get("model name") or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "usable_cores": usable,
            "isa": {f: f in flags for f in ISA_FLAGS} if flags else {}}


@cache
def _cpu() -> dict:
    return cpu_info()


def gpu_info() -> dict | None:
    """The CUDA device this process used (name, count), or None: without torch loaded or
    CUDA initialised nothing is asked (asking would start CUDA)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    return {"name": torch.cuda.get_device_name(torch.cuda.current_device()),
            "count": torch.cuda.device_count()}


def machine() -> dict:
    out = {**_cpu(), "gpu": gpu_info(), "python": platform.python_version()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return out


class Stopwatch:
    """Started when made; `record()` is what the run has cost since, and the machine."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()

    def record(self, **about) -> dict:
        wall, cpu = time.perf_counter() - self.wall, _cpu_seconds() - self.cpu
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return {**about, "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                "cores_busy": round(cpu / wall, 2) if wall > 0 else 0.0,
                "peak_rss_mib": _mib(own), "children_peak_rss_mib": _mib(kids),
                "machine": machine()}
