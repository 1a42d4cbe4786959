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
A worker killed from outside (the kernel's out-of-memory killer) is not an error of its item's
code: the item it ran is named, every other item still runs (in a fresh pool), and then one
SynthaugError names the killed ones. Torch-free at import; a worker imports torch to set its
thread count. With `remote=` (executor.kind slurm or ray) the items run as cells of that engine
instead, each kept for a rerun (pipeline.core.executors).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from synthaug.pipeline.core.errors import SynthaugError

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
_TRACK: Any = None  # shared with the parent: item index -> pid running it (0 not yet, -1 done)


def preload(*modules: str) -> None:
    """Import `modules` here, before workers are forked, so that they inherit them instead of
    each importing its own copy at once (on 2 cores three workers importing the ~2 s of
    torch._dynamo that an optimiser's first step pulls in cost ~3 s of wall time). imap
    preloads torch._dynamo itself whenever it forks."""
    import importlib

    for name in modules:
        importlib.import_module(name)


def _start(threads: int, torch_threads: bool, init: Callable[..., Any], args: tuple,
           track: Any) -> None:
    global _STATE, _TRACK
    _TRACK = track
    if torch_threads:
        import torch

        torch.set_num_threads(threads)
    _STATE = init(*args)


def _run(job: Callable[[Any, Any], Any], item: Any, index: int) -> Any:
    _TRACK[index] = os.getpid()
    try:
        return job(_STATE, item)
    finally:  # not reached when the process is killed: its item keeps this pid
        _TRACK[index] = -1


def _killed(pool: cf.ProcessPoolExecutor, track: Any, left: list[int]) -> tuple[list[int], str]:
    """After a worker died: the items of `left` it was running (all that had started when it
    cannot be told apart), and how it died. Waits for the pool to be gone."""
    procs = dict(getattr(pool, "_processes", None) or {})
    pool.shutdown(wait=True, cancel_futures=True)  # the executor has terminated the others
    started = [i for i in left if track[i] > 0]
    codes = {pid: p.exitcode for pid, p in procs.items()}
    dead = [i for i in started if codes.get(track[i]) not in (None, 0, -signal.SIGTERM)]
    code = codes.get(track[dead[0]]) if dead else None
    how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 and
           -code in signal.valid_signals() else f"exit code {code}" if code else "ended")
    return dead or started or left, how  # nothing started: it died before its first item


def imap(init: Callable[..., Any], args: tuple, job: Callable[[Any, Any], Any],
         items: Sequence[Any], workers: int, threads: int = 1, torch_threads: bool = True,
         describe: Callable[[Any], str] | None = None, remote: Any = None,
         say: Callable[[str], None] = print) -> Iterator[tuple[int, Any]]:
    """(index into `items`, job's result) for every item, in the order they finish. `init`,
    `job`, `args` and the items must pickle (module-level functions, plain data); workers
    <= 1 runs everything here, in order, with torch's threads as they are. `torch_threads`
    False: jobs that never touch torch (albumentations), whose workers neither import it nor
    set its threads. `describe(item)` names an item whose worker was killed (default str).
    `remote` (a pipeline.core.executors.Remote whose kind is not local): every item a cell on
    that engine instead (workers and threads unused), each cell kept for a rerun, and
    `say` tells what was kept."""
    if remote is not None and remote.kind != "local":
        from synthaug.pipeline.core.executors import run_remote

        yield from run_remote(init, args, job, items, remote, torch_threads, describe, say)
        return
    if workers <= 1 or len(items) <= 1:
        state = init(*args)
        for i, item in enumerate(items):
            yield i, job(state, item)
        return
    fork = threads == 1 and "fork" in mp.get_all_start_methods()
    if fork and torch_threads:
        preload("torch", "torch._dynamo")  # torch.optim's first step imports it
    ctx = mp.get_context("fork" if fork else "spawn")
    todo, killed, how = list(range(len(items))), [], ""
    while todo:
        track = ctx.RawArray("q", len(items))
        pool = cf.ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_start,
                                      initargs=(threads, torch_threads, init, args, track))
        done_here: set[int] = set()
        try:
            futures = {pool.submit(_run, job, items[i], i): i for i in todo}
            for done in cf.as_completed(futures):
                result = done.result()
                done_here.add(futures[done])
                yield futures[done], result
            todo = []
        except cf.process.BrokenProcessPool:  # a worker was killed: the others go on
            for f, i in futures.items():  # finished before the break, not yet handed out
                if i not in done_here and f.done() and not f.cancelled() and not f.exception():
                    done_here.add(i)
                    yield i, f.result()
            left = [i for i in todo if i not in done_here]
            dead, how = _killed(pool, track, left)
            killed += dead
            todo = [i for i in left if i not in dead]
        except BaseException:  # an error, Ctrl-C, or the caller stopped early: stop the others
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if killed:
        names = ", ".join((describe or str)(items[i]) for i in sorted(killed))
        raise SynthaugError(f"{names}: the worker process running it was {how} (out of "
                            "memory?); every other job finished and was kept; rerun with "
                            "fewer workers or a smaller batch")
