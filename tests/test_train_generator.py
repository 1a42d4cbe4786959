"""`synthaug train-generator` end to end on tiny data: files written, resume, bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from synthaug.stages.params import Params, load_params
from synthaug.pipeline.data.storage import write_dataset

TINY = {
    "log_every": 2, "checkpoint_every": 2, "grid_every": 4, "grid_per_class": 2,
    "gan": {"steps": 6, "batch_size": 8, "width": 8, "latent_dim": 8, "embed_dim": 4},
    "vae": {"steps": 8, "batch_size": 8, "width": 8, "latent_dim": 4, "embed_dim": 4,
            "kl_warmup_steps": 4},
    "diffusion": {"steps": 6, "autoencoder_steps": 2, "batch_size": 8, "mlp_width": 16,
                  "mlp_blocks": 1, "autoencoder_width": 8, "latent_channels": 4,
                  "train_timesteps": 50, "sample_steps": 2, "warmup_steps": 2},
}
TOTAL = {"gan": 6, "vae": 8, "diffusion": 8}  # optimiser steps (diffusion: + autoencoder's)
MODEL_FILES = [".synthaug-output", "config.json", "weights.safetensors"]  # the output marker too


@pytest.fixture
def project(tmp_path):
    """A folder with tiny prepared splits (3 classes, 28 x 28 x 1) and a tiny params.yaml."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        labels = np.repeat(np.arange(3), n)
        images = rng.integers(0, 60, (len(labels), 28, 28, 1), dtype=np.uint8)
        for i, label in enumerate(labels):  # a bright bar whose place is the class
            images[i, 4 + 8 * label:10 + 8 * label, 4:24] = 220
        folder = tmp_path / "data" / "prepared" / split
        folder.mkdir(parents=True)
        write_dataset(folder, images, labels, ["top", "middle", "bottom"])
    params = {"train_generator": {"device": "cpu", **TINY}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def metric_files(folder: Path) -> list[str]:
    """The files of a metrics folder, its output marker left out."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name != ".synthaug-output")


@pytest.mark.parametrize("family", ["gan", "vae", "diffusion"])
def test_train_generator_writes_exactly_these_files(run_cli, project, family):
    r = run_cli(project, "train-generator", family, "--no-progress")
    assert r.exit_code == 0, r.output
    total = TOTAL[family]
    assert f"{family}: {total} steps in" in r.output
    assert sorted(p.name for p in (project / "models/generators" / family).iterdir()) == MODEL_FILES
    logs = project / "metrics/generators" / family
    files = metric_files(logs)
    grids = [f"grids/step_{s:06d}.png" for s in range(4, total, 4)]
    fixed = ["history.json", "metrics.json", "params.yaml", "samples.png", *grids]
    assert [f for f in files if not f.startswith("plots/")] == sorted(fixed)
    plots = {f.removeprefix("plots/metrics/").removesuffix(".tsv") for f in files if f.startswith("plots/")}
    parts = {"gan": ["discriminator", "generator"], "vae": ["vae"],
             "diffusion": ["autoencoder", "denoiser"]}[family]
    assert {f"{p}_loss" for p in parts} | {f"val_{p}_loss" for p in parts} <= plots
    history = json.loads((logs / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(2, total + 1, 2))  # one row per log_every
    summary = json.loads((logs / "metrics.json").read_text())
    assert summary["steps"] == summary["planned_steps"] == total and not summary["cut_short"]
    assert not (project / "checkpoints/train_generator" / family).exists()  # done: no resume state
    config = json.loads((project / "models/generators" / family / "config.json").read_text())
    assert config["family"] == family and config["class_names"] == ["top", "middle", "bottom"]


def weights(project: Path, family: str = "vae") -> dict:
    return load_file(str(project / "models/generators" / family / "weights.safetensors"))


def test_families_side_by_side_train_the_weights_each_trains_alone(run_cli, project, repo_root):
    """`synthaug train-generator` (all three) on a CPU: the families in one-thread worker
    processes, each with the weights and history of a one-thread run alone; the workers'
    lines reach the terminal, each naming its family."""
    r = subprocess.run([sys.executable, "-m", "synthaug", "train-generator", "--no-progress", "-S",
                        "train_generator.workers=2"], cwd=project, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert r.returncode == 0, r.stderr
    assert "train-generator: gan, vae, diffusion in 2 processes of 1 thread(s)" in r.stdout
    for family, total in TOTAL.items():
        assert f"\n{family}: {total} steps in" in r.stdout
        assert f"\n{family}: step {total:5d}/{total}" in r.stdout
    together = {f: weights(project, f) for f in TOTAL}
    def losses(family: str) -> list[dict]:  # history.json's rows without their clock times
        rows = json.loads((project / "metrics/generators" / family / "history.json").read_text())
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    history = {f: losses(f) for f in TOTAL}
    assert json.loads((project / "metrics/timings/train_generator.json").read_text())["cell"] is None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # run_cli runs here: one thread, as a worker
    try:
        for family in TOTAL:
            assert run_cli(project, "train-generator", family, "--no-progress").exit_code == 0
            alone = weights(project, family)
            assert alone.keys() == together[family].keys()
            assert all(torch.equal(alone[k], together[family][k]) for k in alone), family
            assert losses(family) == history[family] and len(history[family]) > 1
            assert (project / "metrics/timings/train_generator" / f"{family}.json").is_file()
    finally:
        torch.set_num_threads(threads)


def test_unknown_family_among_several_fails_before_any_training(run_cli, project):
    r = run_cli(project, "train-generator", "vae", "flow")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "error: generator: unknown generator 'flow'; allowed: gan, vae, diffusion"]
    assert not (project / "models/generators").exists()


def test_resume_after_interrupt_ends_like_an_uninterrupted_run(run_cli, project, monkeypatch, tmp_path):
    assert run_cli(project, "train-generator", "vae").exit_code == 0
    reference = weights(project)
    reference_history = json.loads((project / "metrics/generators/vae/history.json").read_text())

    from synthaug.generators.training import GeneratorTrainer

    real_steps = GeneratorTrainer.train_steps

    def dies_after_step_4(self, n, bar=None):
        if self.step == 4:
            raise KeyboardInterrupt  # stands in for kill -9: the checkpoint of step 4 is on disk
        return real_steps(self, n, bar)

    monkeypatch.setattr(GeneratorTrainer, "train_steps", dies_after_step_4)
    r = run_cli(project, "train-generator", "vae")
    assert r.exit_code != 0
    ckpt = project / "checkpoints/train_generator/vae/checkpoint.pt"
    assert torch.load(ckpt, weights_only=True)["step"] == 4
    monkeypatch.setattr(GeneratorTrainer, "train_steps", real_steps)
    r = run_cli(project, "train-generator", "vae")
    assert r.exit_code == 0, r.output
    assert "resuming from step 4" in r.output and "step     2/" not in r.output
    resumed = weights(project)
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    history = json.loads((project / "metrics/generators/vae/history.json").read_text())
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in reference_history]
    steps = (project / "metrics/generators/vae/plots/metrics/vae_loss.tsv").read_text().splitlines()
    assert len(steps) == 1 + 4  # header + one row per log_every steps, replayed ones included


def test_changed_config_starts_over(run_cli, project, monkeypatch):
    from synthaug.generators.training import GeneratorTrainer

    real_steps = GeneratorTrainer.train_steps

    def dies_after_step_2(self, n, bar=None):
        if self.step == 2:
            raise KeyboardInterrupt
        return real_steps(self, n, bar)

    monkeypatch.setattr(GeneratorTrainer, "train_steps", dies_after_step_2)
    assert run_cli(project, "train-generator", "vae").exit_code != 0
    monkeypatch.setattr(GeneratorTrainer, "train_steps", real_steps)
    r = run_cli(project, "train-generator", "vae", "-S", "train_generator.vae.lr=0.001",
                "-S", "train_generator.vae.steps=2")
    assert r.exit_code == 0, r.output
    assert "starting over" in r.output and "step     2/2 " in r.output


def test_junk_checkpoint_is_reported_and_training_starts_over(run_cli, project):
    ckpt = project / "checkpoints/train_generator/vae/checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint at all")
    r = run_cli(project, "train-generator", "vae", "--no-progress")
    assert r.exit_code == 0, r.output
    assert f"{ckpt.relative_to(project)}: unreadable checkpoint" in r.output
    assert "starting over" in r.output and "vae: 8 steps in" in r.output
    # and the next run is not troubled by it: the finished run removed its work folder
    assert not ckpt.exists()


def test_max_seconds_cuts_the_run_short_and_says_so(run_cli, project):
    r = run_cli(project, "train-generator", "vae", "--no-progress",
                "-S", "train_generator.vae.steps=100000", "-S", "train_generator.vae.max_seconds=1")
    assert r.exit_code == 0, r.output
    assert "vae: max_seconds 1 reached: stopped after" in r.output
    summary = json.loads((project / "metrics/generators/vae/metrics.json").read_text())
    assert summary["cut_short"] and 0 < summary["steps"] < summary["planned_steps"] == 100000
    assert summary["train_seconds"] < 3


def test_the_step_budget_does_not_depend_on_the_split_size(project):
    """100 and 500 training images get the same number of optimiser steps (and batches of
    the same size): quality follows updates, not passes."""
    from synthaug.generators.common import build_generator
    from synthaug.generators.config import TrainGeneratorConfig, VAEConfig
    from synthaug.generators.training import GeneratorTrainer

    cfg = TrainGeneratorConfig(vae=VAEConfig(steps=30, batch_size=16, width=8, latent_dim=4,
                                             embed_dim=4))
    rng = np.random.default_rng(0)
    steps = {}
    for n in (100, 500):
        x = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
        y = np.arange(n) % 3
        model = build_generator("vae", cfg.vae, (1, 28, 28), ["a", "b", "c"])
        trainer = GeneratorTrainer(model, cfg, (x, y), (x[:8], y[:8]), torch.device("cpu"),
                                   torch.Generator().manual_seed(0))
        seen = []
        real_take = trainer.stream.take
        trainer.stream.take = lambda size: seen.append(size) or real_take(size)
        while not trainer.done:
            trainer.train_steps(7)
        steps[n] = (trainer.step, seen)
    assert steps[100] == steps[500] == (30, [16] * 30)


def test_kill_9_then_rerun_continues(project, repo_root):
    """A real `kill -9` mid-run: the rerun picks up the last checkpoint and finishes."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train_generator"]["vae"]["steps"] = 400  # long enough to be killed mid-way
    params["train_generator"]["grid_every"] = 0
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "synthaug", "train-generator", "vae", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    ckpt = project / "checkpoints/train_generator/vae/checkpoint.pt"
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 2 <= killed_at < 400
    assert not (project / "models/generators/vae").exists()
    r = subprocess.run(cmd, check=False, cwd=project, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming from step" in r.stdout
    assert int(r.stdout.split("resuming from step ")[1].split()[0]) >= killed_at
    assert sorted(p.name for p in (project / "models/generators/vae").iterdir()) == MODEL_FILES


def test_params_yaml_section_matches_defaults(repo_root):
    assert load_params(repo_root / "params.yaml").train_generator == Params().train_generator


@pytest.mark.parametrize("args,message", [
    (["flow"], "error: generator: unknown generator 'flow'; allowed: gan, vae, diffusion"),
    (["gan", "-S", "train_generator.gan.loss=wasserstein"],
     "train_generator.gan.loss: allowed: 'hinge' or 'nonsaturating' (got 'wasserstein')"),
    (["vae", "-S", "train_generator.vae.latent_dim=0"],
     "train_generator.vae.latent_dim: Input should be greater than 0 (got 0)"),
    (["diffusion", "-S", "train_generator.diffusion.space=voxel"], "train_generator.diffusion.space"),
    (["diffusion", "-S", "train_generator.diffusion.channels=[8, 8, 8, 8]",
      "-S", "train_generator.diffusion.denoiser=unet"],
     "train_generator.diffusion.channels: 4 levels halve a 4 x 4 input 3 times"),
    (["diffusion", "-S", "train_generator.diffusion.space=pixel",
      "-S", "train_generator.diffusion.denoiser=mlp"],
     "train_generator.diffusion: denoiser 'mlp' works in latent space only"),
])
def test_bad_input_fails_with_one_line_naming_the_parameter(run_cli, project, args, message):
    r = run_cli(project, "train-generator", *args)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.output


def test_a_run_resumes_and_keeps_its_folder_without_the_cli(project):
    """synthaug.generators.run.GeneratorRun, the library under `synthaug train-generator`: a second
    run of the same config continues from the first one's checkpoint; a rank other than 0
    leaves the shared work folder alone and logs into a scratch folder."""
    from synthaug.generators.run import GeneratorRun
    from synthaug.pipeline.core.device import seed_everything
    from synthaug.pipeline.core.distributed import Dist
    from synthaug.pipeline.data.storage import read_dataset

    cfg = load_params(project / "params.yaml").train_generator
    train, val = (read_dataset(project / "data/prepared" / s, mmap=False) for s in ("train", "val"))
    work, cpu = project / "work", torch.device("cpu")

    def run(dist=Dist()):
        return GeneratorRun("vae", cfg, train, val, work, cpu,
                            seed_everything(cfg.seed, deterministic=True), dist)

    first = run()
    assert first.resume() == "" and "8 steps of 8" in first.describe()
    lines = []
    first.train(progress=False, log=lines.append)
    assert len(lines) == 4 and lines[-1].startswith("step     8/8")
    assert (work / "checkpoint.pt").is_file() and (work / "live/samples.png").is_file()
    second = run()
    assert second.resume().startswith("resuming from step 8") and second.trainer.done
    other = run(Dist(rank=1))
    other.resume()
    assert other.work != work and other.work.name.startswith("rank1-")
    other.train(progress=False)
    assert not (other.work / "live/samples.png").exists()  # only rank 0 samples
    other.close()
    out = project / "out"
    for d in ("model", "log"):
        (out / d).mkdir(parents=True)
    second.save(out / "model", out / "log")
    assert sorted(p.name for p in (out / "model").iterdir()) == MODEL_FILES[1:]  # no marker:
    assert json.loads((out / "model/config.json").read_text())["steps"] == 8  # not a commit
    assert (out / "log/history.json").is_file() and (work / "checkpoint.pt").is_file()
    second.close()
    assert not work.exists()


def test_cpu_bf16_trains_in_bf16_only_where_the_cpu_runs_it(run_cli, project, monkeypatch):
    """train_generator.cpu_bf16: the log says which precision ran and why; under the AVX2
    stand-in it is fp32, bit for bit the weights of cpu_bf16=false; on a CPU with native bf16
    the weights differ (autocast ran)."""
    def run(*extra):
        r = run_cli(project, "train-generator", "vae", "--no-progress", *extra)
        assert r.exit_code == 0, r.output
        return r.output, weights(project)

    out, fp32 = run("-S", "train_generator.cpu_bf16=false")
    assert "cpu: fp32 (train_generator.cpu_bf16 is off)" in out
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    out, capped = run("-S", "train_generator.cpu_bf16=true")
    assert "cpu: fp32 (ONEDNN_MAX_CPU_ISA=AVX2)" in out
    assert all(torch.equal(fp32[k], capped[k]) for k in fp32)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bf16: the bf16 path cannot run here")
    out, bf16 = run("-S", "train_generator.cpu_bf16=true")
    assert "cpu: bf16 autocast" in out
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)
    assert all(torch.isfinite(v).all() for v in bf16.values())


# ------------------------------------------------------------------ diverged generators
def test_a_diverging_generator_stops_at_the_first_non_finite_loss(run_cli, project):
    """Issue 31, item 3: a huge learning rate used to exit 0 with nearly all weights NaN."""
    from tests.conftest import one_line_error

    r = run_cli(project, "train-generator", "vae", "--no-progress",
                "-S", "train_generator.vae.lr=1e30")
    one_line_error(r, "train_generator.vae.lr: the vae loss is not finite at step",
                   "train_generator.vae.lr=1e+30")
    assert not (project / "models/generators/vae").exists()  # nothing saved


def test_a_generator_with_non_finite_weights_is_refused_by_sample(run_cli, project):
    """Issue 31, item 3: `sample` drew all-black sets from a NaN generator, exit 0."""
    from safetensors.torch import save_file

    from synthaug.generators.common import load_generator
    from synthaug.pipeline.core.errors import SynthaugError
    from tests.conftest import one_line_error

    assert run_cli(project, "train-generator", "vae", "--no-progress").exit_code == 0
    folder = project / "models/generators/vae"
    weights = load_file(str(folder / "weights.safetensors"))
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(folder / "weights.safetensors"))
    with pytest.raises(SynthaugError, match="weights are not finite"):
        load_generator(folder)
    r = run_cli(project, "sample", "vae-prior", "-S", "sample.per_class=2")
    one_line_error(r, str(Path("models/generators/vae/weights.safetensors")), "not finite",
                   "synthaug train-generator vae")
    assert not (project / "data/synthetic/vae-prior").exists()


def test_sample_refuses_a_generator_of_another_train_split(run_cli, project):
    """Issue 31, item 2: a generator trained before `prepare` rewrote the train split."""
    from tests.conftest import one_line_error

    assert run_cli(project, "train-generator", "vae", "--no-progress").exit_code == 0
    train = project / "data/prepared/train"
    from synthaug.pipeline.data.storage import read_dataset

    ds = read_dataset(train, mmap=False)
    import shutil

    shutil.rmtree(train)
    train.mkdir()
    write_dataset(train, ds.images[::-1].copy(), ds.labels[::-1].copy(), ds.class_names)
    r = run_cli(project, "sample", "vae-prior", "-S", "sample.per_class=2")
    one_line_error(r, "models/generators/vae: stale, made from another data/prepared/train",
                   "rerun `synthaug train-generator vae`")
    assert not (project / "data/synthetic/vae-prior").exists()
