"""The `executor` section: where the cells of the stages that fan out run
(pipeline.core.executors)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from synthaug.pipeline.core.settings import Section


class SlurmConfig(Section):
    """`executor.slurm`: each cell one task of a SLURM job array (submitit's AutoExecutor)."""

    partition: str | None = Field(None, description="the partition (None: the cluster's default)")
    time_min: PositiveInt = Field(60, description="each cell's time limit, minutes")
    cpus_per_task: PositiveInt = Field(1, description=(
        "CPU cores of each cell (its torch threads)"))
    gpus_per_task: NonNegativeInt = Field(0, description="GPUs of each cell")
    mem_gb: PositiveFloat | None = Field(None, description=(
        "memory of each cell, GB (None: the cluster's default)"))
    array_parallelism: PositiveInt = Field(256, description=(
        "at most this many cells of one stage run at once"))
    setup: list[str] = Field(default=[], description=(
        "shell lines each job runs first (module load ..., source .venv/bin/activate)"))
    additional_parameters: dict[str, str | int] = Field(default={}, description=(
        "other sbatch options, e.g. {account: myproject, qos: normal}"))
    cluster: Literal["slurm", "local"] | None = Field(None, description=(
        "None: SLURM where sbatch is found, else this machine; local: each cell a "
        "subprocess here (to try a recipe)"))


class RayConfig(Section):
    """`executor.ray`: each cell one Ray task with its own CPU/GPU resources."""

    address: str | None = Field(None, description=(
        "a running cluster (auto, or host:port); None: start a Ray on this machine for the "
        "stage and stop it after"))
    num_cpus: PositiveFloat = Field(1, description="CPUs of each cell (its torch threads)")
    num_gpus: NonNegativeFloat = Field(0, description="GPUs of each cell (0.5: two share one)")
    local_cpus: PositiveInt | None = Field(None, description=(
        "CPUs of the Ray started here (address None); None: every core"))
    return_files: bool = Field(False, description=(
        "a cell's files come back as bytes with its result (nodes without a shared "
        "filesystem); false: they write them in place"))


class ExecutorConfig(Section):
    """Where the cells of the stages that fan out (train's study cells, the sweep's and the
    when points, quality's sets, train_generator's families) run."""

    kind: Literal["local", "slurm", "ray"] = Field("local", description=(
        "local: worker processes here (each section's workers and threads); slurm: a job "
        "array (pip install synthaug[slurm]); ray: Ray tasks (pip install synthaug[ray])"))
    slurm: SlurmConfig = SlurmConfig()
    ray: RayConfig = RayConfig()
