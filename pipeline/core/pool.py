"""Independent jobs spread over worker processes, each with its share of the CPU threads.

Small networks keep two CPU cores only partly busy: a cnn fit of the study's recipe took 5.8 s
on one thread and 3.8 s on two, an efficientnet_lite0 fit 19.3 s and 13.9 s (2-core AMD EPYC,
AVX2), so two one-thread processes finish two fits in the time one two-thread process needs
for about 1.4. The sweep's points are such jobs (pipeline.experiments.sweep).

Workers start once each: `init(*args)` builds its state (data read, a device), then every
item runs as `job(state, item)`. They are forked where the platform can and each runs one
thread (a forked worker costs nothing to start, and a one-thread child never touches the
OpenMP thread pool it inherited, as torch's DataLoader workers rely on); otherwise spawned
(a fork with OpenMP threads in use is not safe), which costs each worker ~5 s of imports. Items are handed out in the order given, to whichever worker is free
(give the longest first). Results come back as items finish. The first error stops every
worker and is raised in the parent, so a caller that writes only at the end writes nothing.
Torch-free at import; a worker imports torch to set its thread count.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

MAX_WORKERS = 4  # each holds its own copy of the data and a model; more rarely pays on a CPU


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def helper_workers() -> int:
    """Helper processes beside one training process (online augmentation's loader): the
    cores but one, which the training step keeps, at most MAX_WORKERS."""
    return max(0, min(MAX_WORKERS, usable_cores() - 1))


def fork_context():
    """fork where the platform has it (workers share the parent's arrays for free), else
    spawn (macOS, Windows): for helper processes that never run torch ops in parallel."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def plan(jobs: int, device_type: str, workers: int = 0,
         cores: int | None = None) -> tuple[int, int]:
    """(worker processes, torch threads each) for `jobs` items on `device_type`.

    `workers` 0 = auto: on a CPU with two or more cores, one process per core (at most
    MAX_WORKERS), the cores shared out as threads; but a few jobs (up to twice the cores) run
    all at once rather than leave a core idle while the last one finishes (3 seeds on 2
    cores: 3 one-thread processes, 46 s for an efficientnet_lite0 cell, against 59 s in 2 and
    66 s in one process of 2 threads). On a GPU (or one core) a single in-process run (0
    threads: torch's setting stays). A positive `workers` is taken as given (at most `jobs`)."""
    cores = cores or usable_cores()
    if workers <= 0:
        if device_type != "cpu" or cores < 2:
            return 1, 0
        workers = jobs if jobs <= min(2 * cores, MAX_WORKERS) else min(cores, MAX_WORKERS)
    workers = max(1, min(workers, jobs))
    if workers == 1:
        return 1, 0
    return workers, max(1, cores // workers)


_STATE: Any = None  # a worker's state, built once by `_start`


def preload(*modules: str) -> None:
    """Import `modules` here, before workers are forked, so that they inherit them instead of
    each importing its own copy at once (on 2 cores three workers importing the ~2 s of
    torch._dynamo that an optimiser's first step pulls in cost ~3 s of wall time). imap
    preloads torch._dynamo itself whenever it forks."""
    import importlib

    for name in modules:
        importlib.import_module(name)


def _start(threads: int, torch_threads: bool, init: Callable[..., Any], args: tuple) -> None:
    global _STATE
    if torch_threads:
        import torch

        torch.set_num_threads(threads)
    _STATE = init(*args)


def _run(job: Callable[[Any, Any], Any], item: Any) -> Any:
    return job(_STATE, item)


def imap(init: Callable[..., Any], args: tuple, job: Callable[[Any, Any], Any],
         items: Sequence[Any], workers: int, threads: int = 1,
         torch_threads: bool = True) -> Iterator[tuple[int, Any]]:
    """(index into `items`, job's result) for every item, in the order they finish. `init`,
    `job`, `args` and the items must pickle (module-level functions, plain data); workers
    <= 1 runs everything here, in order, with torch's threads as they are. `torch_threads`
    False: jobs that never touch torch (albumentations), whose workers neither import it nor
    set its threads."""
    if workers <= 1 or len(items) <= 1:
        state = init(*args)
        for i, item in enumerate(items):
            yield i, job(state, item)
        return
    fork = threads == 1 and "fork" in mp.get_all_start_methods()
    if fork and torch_threads:
        preload("torch", "torch._dynamo")  # torch.optim's first step imports it
    pool = cf.ProcessPoolExecutor(min(workers, len(items)),
                                  mp_context=mp.get_context("fork" if fork else "spawn"),
                                  initializer=_start, initargs=(threads, torch_threads, init, args))
    try:
        futures = {pool.submit(_run, job, item): i for i, item in enumerate(items)}
        for done in cf.as_completed(futures):
            yield futures[done], done.result()
    except BaseException:  # an error, Ctrl-C, or the caller stopped early: stop the others now
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
