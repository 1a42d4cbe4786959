"""Data-parallel training: torchrun with 2 CPU processes (gloo) against one process."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from synthaug.pipeline.core.distributed import Dist
from synthaug.pipeline.data.storage import write_dataset
from tests.test_train import blobs


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_parts_cover_a_batch_once_and_weights_average_to_the_batch_mean(world, n):
    parts = [Dist(rank, world).part(n) for rank in range(world)]
    seen = sorted(i for (sl, w) in parts if w for i in range(n)[sl])
    assert seen == list(range(n))  # every sample of the batch on exactly one rank
    # sum_r w_r * mean_r / world == the mean over the batch, for any per-sample losses
    losses = torch.arange(n, dtype=torch.float64) ** 2 + 1
    total = sum(w * losses[sl].mean() for sl, w in parts if w) / world
    assert total.item() == pytest.approx(losses.mean().item())


@pytest.fixture
def project(tmp_path):
    prepared = tmp_path / "data" / "prepared"
    for split, (x, y) in {"train": blobs(), "val": blobs(10, seed=1),
                          "test": blobs(12, seed=2)}.items():
        (prepared / split).mkdir(parents=True)
        write_dataset(prepared / split, x, y, ["tl", "br"], meta={"source": "blobs"})
    params = yaml.safe_load((Path(__file__).parent.parent / "params.yaml").read_text())
    # lenet5 has no BatchNorm (whose batch statistics would be per rank) and no dropout: the
    # two-process run must then take the very same steps as the single process
    params["train"].update(model="lenet5", epochs=3, batch_size=16, epoch_size=100, device="cpu",
                           threads=1, cpu_bf16=False)  # fp32: equal up to summation order
    params["study"]["variants"] = ["real"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _synthaug(cwd: Path, *args: str, torchrun: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={torchrun}", "-m", "synthaug"] if torchrun
              else [sys.executable, "-m", "synthaug"])
    r = subprocess.run([*launch, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_two_gloo_processes_train_like_one(project):
    _synthaug(project, "compose")
    _synthaug(project, "train", "--no-progress", "--no-figures")
    one = project / "single"
    for sub in ("models", "metrics"):
        shutil.move(project / sub, one / sub)
    r = _synthaug(project, "train", "--no-progress", "--no-figures", torchrun=2)
    assert r.stdout.count("best epoch") == 1  # rank 0 speaks (and writes) for both

    run = "real/lenet5/seed0"
    a = load_file(one / "models/classifiers" / run / "weights.safetensors")
    b = load_file(project / "models/classifiers" / run / "weights.safetensors")
    assert a.keys() == b.keys()
    for k in a:  # same data, same steps: the same weights up to float summation order
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)

    h1 = json.loads((one / "metrics/train" / run / "history.json").read_text())
    h2 = json.loads((project / "metrics/train" / run / "history.json").read_text())
    assert [r["epoch"] for r in h2] == [r["epoch"] for r in h1] == [1, 2, 3]
    # each epoch's 100 samples trained once in all, split between the ranks (not once per rank)
    assert [r["samples"] for r in h2] == [r["samples"] for r in h1] == [100, 100, 100]
    for r1, r2 in zip(h1, h2):
        assert set(r1) == set(r2)
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-6), key
    m1 = json.loads((one / "metrics/evaluate" / run / "metrics.json").read_text())
    m2 = json.loads((project / "metrics/evaluate" / run / "metrics.json").read_text())
    # the run id hashes the weights, which agree only up to float summation order
    assert m1.pop("run_id") != "" and m2.pop("run_id") != "" and m1 == m2
    files = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*")  # noqa: E731
                                if p.is_file())
    # the same files (the single run's metrics/ also holds compose's timing file)
    assert files(project / "metrics") == [f for f in files(one / "metrics")
                                          if f != "timings/compose.json"]
    assert not list(project.rglob(".*tmp-*"))  # no temporary folders left behind


def test_a_generator_trains_on_two_gloo_processes(tmp_path):
    from tests.test_train_generator import TINY, metric_files

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        labels = np.repeat(np.arange(3), n)
        images = rng.integers(0, 60, (len(labels), 28, 28, 1), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 4 + 8 * label:10 + 8 * label, 4:24] = 220
        (tmp_path / "data/prepared" / split).mkdir(parents=True)
        write_dataset(tmp_path / "data/prepared" / split, images, labels, ["t", "m", "b"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"train_generator": {"device": "cpu", "threads": 1, **TINY}}))
    _synthaug(tmp_path, "train-generator", "gan", "--no-progress")
    one = tmp_path / "single"
    for sub in ("models", "metrics"):
        shutil.move(tmp_path / sub, one / sub)
    r = _synthaug(tmp_path, "train-generator", "gan", "--no-progress", torchrun=2)
    assert r.stdout.count("gan: 6 steps in") == 1
    assert metric_files(tmp_path / "metrics") == metric_files(one / "metrics")
    h1 = json.loads((one / "metrics/generators/gan/history.json").read_text())
    h2 = json.loads((tmp_path / "metrics/generators/gan/history.json").read_text())
    assert [list(r) for r in h2] == [list(r) for r in h1]  # same steps, same losses logged
    assert all(np.isfinite(v) for row in h2 for v in row.values())
    # the first steps are the same batches and weights (only the noise differs per rank), so
    # the discriminator's first losses agree closely with the single process's
    assert h2[0]["discriminator_loss"] == pytest.approx(h1[0]["discriminator_loss"], rel=0.1)
    assert not (tmp_path / "checkpoints/train_generator/gan").exists()  # rank 0 cleaned up
