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
    out = {**_cpu(), "isa_cap": isa_cap(), "gpu": gpu_info(), "python": platform.python_version()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    return out


def isa_cap() -> str | None:
    """The ISA cap this process runs under (a stand-in for an older CPU), or None:
    `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2` makes an AVX-512 CPU compute as an
    AVX2 one does."""
    caps = [f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
            if os.environ.get(k)]
    return " ".join(caps) or None


def process_age(stat: str | None = None, uptime: float | None = None) -> float | None:
    """Seconds since this process started (its interpreter and imports before the command
    did any work), from /proc (`stat`, `uptime`: their contents, for tests); None elsewhere."""
    try:
        if stat is None:
            with open("/proc/self/stat", encoding="ascii") as f:
                stat = f.read()
        if uptime is None:
            with open("/proc/uptime", encoding="ascii") as f:
                uptime = float(f.read().split()[0])
        ticks = int(stat.rpartition(")")[2].split()[19])  # field 22, starttime (after comm)
        return max(0.0, round(uptime - ticks / os.sysconf("SC_CLK_TCK"), 3))
    except (OSError, ValueError, IndexError):
        return None


class Stopwatch:
    """Started when made; `record()` is what the run has cost since, and the machine; with
    `startup_seconds` (the process's life before the stopwatch: interpreter and imports) and
    the wall-clock `started_at` (process start) and `ended_at`, so that a reader can tell how
    much of a whole `dvc repro` went between the commands."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()
        self.startup, self.now = process_age(), time.time()

    def record(self, **about) -> dict:
        wall, cpu = time.perf_counter() - self.wall, _cpu_seconds() - self.cpu
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        wall, cpu = round(wall, 3), round(cpu, 3)  # cores_busy from the numbers written
        return {**about, "wall_seconds": wall, "cpu_seconds": cpu,
                "cores_busy": round(cpu / wall, 2) if wall > 0 else 0.0,
                "startup_seconds": self.startup,
                "started_at": round(self.now - (self.startup or 0.0), 3),
                "ended_at": round(self.now + wall, 3),
                "peak_rss_mib": _mib(own), "children_peak_rss_mib": _mib(kids),
                "machine": machine()}
