"""The engines that run a stage's cells away from this process (pipeline.core.executors):
SLURM job arrays through submitit, Ray tasks. Each yields (index, result, None) or (index,
None, what went wrong) as the cells finish, and cancels what is left when its caller stops."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.core.cells import first_line, keep_cell, restore_cell, run_cell


def _threads(n: float, torch_threads: bool) -> int:
    return max(1, int(n)) if torch_threads else 0


def engine_folder(folder: Path) -> Path:
    """This run's engine files (submitit's pickles and logs) under a stage's `folder`."""
    return Path(folder) / "engine" / str(os.getpid())


def slurm_executor(cfg, folder: Path):
    """submitit's executor for `cfg` (an executor.slurm section), its files under `folder`."""
    try:
        import submitit
    except ImportError:
        raise SynthaugError("executor.kind: slurm needs submitit: pip install "
                            "'synthaug[slurm]' (or set executor.kind: local)") from None
    ex = submitit.AutoExecutor(folder=engine_folder(folder) / "%j", cluster=cfg.cluster)
    ex.update_parameters(timeout_min=cfg.time_min, cpus_per_task=cfg.cpus_per_task,
                         name=f"synthaug-{Path(folder).name}")
    if ex.cluster == "slurm":
        ex.update_parameters(
            slurm_partition=cfg.partition, slurm_gpus_per_task=cfg.gpus_per_task or None,
            slurm_mem=f"{int(cfg.mem_gb * 1024)}M" if cfg.mem_gb else None,
            slurm_array_parallelism=cfg.array_parallelism, slurm_setup=cfg.setup,
            slurm_additional_parameters=dict(cfg.additional_parameters))
    return ex


def slurm(init, args, job, items, todo, remote, torch_threads, keep, outs):
    """A job array of the `todo` cells (SLURM where sbatch is found, else subprocesses)."""
    cfg = remote.config.slurm
    ex = slurm_executor(cfg, remote.folder)  # (a SynthaugError without submitit)
    import submitit.helpers

    threads = _threads(cfg.cpus_per_task, torch_threads)
    n = len(todo)
    jobs = ex.map_array(run_cell, [init] * n, [args] * n, [job] * n, [items[i] for i in todo],
                        [threads] * n, [[str(p) for p in outs[i]] for i in todo],
                        [keep[i] for i in todo], [False] * n, [os.getcwd()] * n)
    which = {j.job_id: i for j, i in zip(jobs, todo)}
    try:
        for j in submitit.helpers.as_completed(jobs, poll_frequency=1 if ex.cluster != "slurm"
                                               else 15):
            i = which[j.job_id]
            try:
                result = j.result()
            except Exception as e:  # failed, killed, timed out, cancelled: its log stays
                yield i, None, f"job {j.job_id}: {first_line(e)} (log: {j.paths.stderr})"
                continue
            shutil.rmtree(j.paths.folder, ignore_errors=True)  # its log and pickles
            yield i, result, None
    finally:
        for j in jobs:
            if not j.done():  # the parent stopped (an error, Ctrl-C): not left running
                j.cancel(check=False)


def ray_tasks(init, args, job, items, todo, remote, torch_threads, keep, outs):
    try:
        import ray
    except ImportError:
        raise SynthaugError("executor.kind: ray needs ray: pip install 'synthaug[ray]' (or "
                            "set executor.kind: local)") from None
    cfg = remote.config.ray
    started = not ray.is_initialized()
    if started:
        ray.init(address=cfg.address, num_cpus=cfg.local_cpus if cfg.address is None else None,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, max_retries=0)(run_cell)
        threads = _threads(cfg.num_cpus, torch_threads)
        refs = {task.remote(init, args, job, items[i], threads,
                            [str(p) for p in outs[i]], keep[i], cfg.return_files,
                            os.getcwd()): i
                for i in todo}
        left = list(refs)
        try:
            while left:
                done, left = ray.wait(left, num_returns=1)
                i = refs[done[0]]
                try:
                    result = ray.get(done[0])
                except Exception as e:  # the cell's error, or its worker died
                    yield i, None, first_line(e)
                    continue
                if cfg.return_files:
                    result, files = result
                    keep_cell(Path(keep[i]), result, files)
                    restore_cell(Path(keep[i]), outs[i])
                yield i, result, None
        finally:
            for ref in left:
                ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()

