"""Pretrain, then adapt: a generator learns unlabelled images (the rest of the train pool, or
another image folder) under the null label, then the labelled split class-conditionally;
both phases are recorded and resume bit for bit, and the pool never holds val or test images."""
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from synthaug.generators.common import build_generator
from synthaug.generators.config import TrainGeneratorConfig
from synthaug.generators.pretrain import pool_rest, pretrain_images
from synthaug.generators.training import GeneratorTrainer
from synthaug.pipeline.core.errors import SynthaugError
from tests.conftest import one_line_error

NAMES = ["a", "b", "c"]
TINY = {
    "vae": {"steps": 6, "batch_size": 8, "width": 8, "latent_dim": 4, "embed_dim": 4,
            "kl_warmup_steps": 2, "pretrain": {"source": "pool", "steps": 4}},
    "gan": {"steps": 4, "batch_size": 8, "width": 8, "latent_dim": 8, "embed_dim": 4,
            "pretrain": {"source": "pool", "steps": 4}},
    "diffusion": {"steps": 4, "autoencoder_steps": 2, "batch_size": 8, "mlp_width": 16,
                  "mlp_blocks": 1, "autoencoder_width": 8, "latent_channels": 4,
                  "train_timesteps": 50, "sample_steps": 2, "warmup_steps": 1,
                  "pretrain": {"source": "pool", "steps": 3}},
}


def data(seed=0, n=6, size=12):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(NAMES)), n)
    return rng.integers(0, 256, (len(labels), size, size, 1), dtype=np.uint8), labels


def trainer(family, cfg, pretrain, seed=0):
    torch.manual_seed(seed)
    x, y = data()
    model = build_generator(family, cfg.family(family), (1, 12, 12), NAMES)
    return GeneratorTrainer(model, cfg, (x, y), (x[:6], y[:6]), torch.device("cpu"),
                            torch.Generator().manual_seed(seed), pretrain=pretrain)


@pytest.mark.parametrize("family", ["vae", "gan", "diffusion"])
def test_pretrain_phase_runs_unconditionally_then_the_adapt_phase(family):
    cfg = TrainGeneratorConfig.model_validate({family: TINY[family]})
    pool = data(seed=1, n=20)[0]
    t = trainer(family, cfg, pool)
    fcfg = cfg.family(family)
    ae = fcfg.autoencoder_steps if family == "diffusion" else 0
    assert t.pretrain_end == fcfg.pretrain.steps + ae and t.total == t.pretrain_end + fcfg.steps
    embed = {"vae": "embed.weight", "gan": "g.embed.weight",
             "diffusion": "denoiser.class_embed.weight"}[family]
    before = t.model.state_dict()[embed].clone()
    assert len(before) == len(NAMES) + 1  # the null label's row
    rows = []
    while t.phase == "pretrain":
        rows.append(t.train_steps(3))  # rounds stop at the phase boundary
    assert t.step == t.pretrain_end
    after = t.model.state_dict()[embed]
    # unconditional: only the null label's embedding learnt, the classes' rows are untouched
    assert torch.equal(after[:len(NAMES)], before[:len(NAMES)])
    assert not torch.equal(after[len(NAMES)], before[len(NAMES)])
    while not t.done:
        rows.append(t.train_steps(3))
    assert not torch.equal(t.model.state_dict()[embed][:len(NAMES)], before[:len(NAMES)])
    assert [r["phase"] for r in rows] == (["pretrain"] * len([r for r in rows if r["step"] <= t.pretrain_end])
                                          + ["adapt"] * len([r for r in rows if r["step"] > t.pretrain_end]))
    assert rows[-1]["step"] == t.total and any(r["step"] == t.pretrain_end for r in rows)


def test_without_pretraining_nothing_changes():
    """The default config: no null label, no phases: the model and trainer as before."""
    cfg = TrainGeneratorConfig.model_validate({"vae": {k: v for k, v in TINY["vae"].items()
                                                       if k != "pretrain"}})
    t = trainer("vae", cfg, None)
    assert t.pretrain_end == 0 and t.phase == "adapt" and len(t.model.embed.weight) == len(NAMES)
    row = t.train_steps(2)
    assert "phase" not in row
    with pytest.raises(ValueError, match="pretrain images are needed exactly when"):
        trainer("vae", cfg, data()[0])


@pytest.mark.parametrize("stop", [2, 7])  # in the pretraining phase, then in the adapt phase
@pytest.mark.parametrize("family", ["vae", "gan", "diffusion"])
def test_resume_in_either_phase_continues_bit_for_bit(family, stop, tmp_path):
    from synthaug.generators.resume import load_checkpoint, save_checkpoint

    cfg = TrainGeneratorConfig.model_validate({family: TINY[family]})
    pool = data(seed=1, n=20)[0]
    whole = trainer(family, cfg, pool)
    while not whole.done:
        whole.train_steps(3)
    part = trainer(family, cfg, pool)
    while part.step < stop:
        part.train_steps(stop - part.step)
    assert part.phase == ("pretrain" if stop < part.pretrain_end else "adapt")
    save_checkpoint(tmp_path / "c.pt", "key", part.state_dict())
    state, note = load_checkpoint(tmp_path / "c.pt", "key", torch.device("cpu"))
    assert note.startswith(f"resuming from step {stop}")
    torch.manual_seed(123)  # the global RNG moved on: the checkpoint restores it
    resumed = trainer(family, cfg, pool, seed=0)
    resumed.load_state_dict(state)
    while not resumed.done:
        resumed.train_steps(3)
    a, b = whole.ema.state_dict(), resumed.ema.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    m, n = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(m[k], n[k]) for k in m)


def write_folder(root, sizes=((13, 9), (31, 17), (20, 20))):
    """Odd-sized RGB images in two class folders, plus a file that is not an image."""
    rng = np.random.default_rng(0)
    for c in ("cats", "dogs"):
        (root / c).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(
                root / c / f"{i}.png")
    (root / "dogs" / "junk.png").write_bytes(b"not an image")
    return root


def test_folder_source_is_read_at_the_data_sets_size_and_channels(tmp_path):
    root = write_folder(tmp_path / "other")
    cfg = TrainGeneratorConfig.model_validate({"vae": {**TINY["vae"],
                                                       "pretrain": {"source": f"folder:{root}", "steps": 3}}})
    images = pretrain_images("vae", cfg.vae.pretrain, (1, 12, 12), lambda: None)
    assert images.shape == (6, 12, 12, 1) and images.dtype == np.uint8  # the junk file skipped
    # gray and resized as `synthaug prepare` converts a data set's own images
    from synthaug.pipeline.data.config import PrepareConfig
    from synthaug.pipeline.data.images import to_array

    with Image.open(root / "cats" / "1.png") as im:
        assert im.mode == "RGB" and im.size == (31, 17)
        assert np.array_equal(images[1], to_array(im, PrepareConfig(size=12, channels=1)))
    t = trainer("vae", cfg, images)
    while not t.done:
        t.train_steps(4)
    assert t.step == 3 + 6


@pytest.mark.parametrize("make, fragment", [
    (lambda tmp: tmp / "missing", "not found"),
    (lambda tmp: (tmp / "flat").mkdir() or tmp / "flat", "has no class folders"),
])
def test_a_bad_folder_is_one_line_naming_the_setting(tmp_path, make, fragment):
    root = make(tmp_path)
    cfg = TrainGeneratorConfig.model_validate({"gan": {"pretrain": {"source": f"folder:{root}"}}})
    with pytest.raises(SynthaugError) as e:
        pretrain_images("gan", cfg.gan.pretrain, (1, 12, 12), lambda: None)
    msg = str(e.value)
    assert msg.startswith("train_generator.gan.pretrain.source: ") and fragment in msg
    assert "\n" not in msg and "prepare.source" not in msg


def test_pool_without_a_pool_and_unknown_sources_are_refused():
    cfg = TrainGeneratorConfig.model_validate({"vae": {"pretrain": {"source": "pool"}}})
    with pytest.raises(SynthaugError, match=r"^train_generator.vae.pretrain.source: pool: the train "
                                            r"pool has no images beyond the split"):
        pretrain_images("vae", cfg.vae.pretrain, (1, 12, 12), lambda: None)
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match="allowed: null, pool, folder:PATH"):
        TrainGeneratorConfig.model_validate({"vae": {"pretrain": {"source": "imagenet"}}})


@pytest.fixture
def prepared(tmp_path, run_cli):
    """scikit-learn's digits prepared with 5 training images per class (the pool kept)."""
    params = {"prepare": {"source": "digits", "size": 8, "train_per_class": 5},
              "train_generator": {"device": "cpu", "log_every": 2, "checkpoint_every": 4,
                                  "vae": {**TINY["vae"], "pretrain": {"source": "pool", "steps": 6}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = run_cli(tmp_path, "prepare")
    assert r.exit_code == 0, r.output
    return tmp_path


def rows(images):
    return {bytes(im) for im in np.asarray(images)}


def test_the_stage_pretrains_on_the_pool_without_val_or_test_images(prepared, run_cli):
    from synthaug.pipeline.data.storage import read_dataset

    d = prepared / "data" / "prepared"
    train, val, test = (read_dataset(d / s) for s in ("train", "val", "test"))
    rest = pool_rest(d)
    assert len(rest) == len(read_dataset(d / "pool")) - len(train) > 0
    assert not rows(rest) & (rows(val.images) | rows(test.images) | rows(train.images))
    r = run_cli(prepared, "train-generator", "vae", "--no-progress")
    assert r.exit_code == 0, r.output
    assert f"the first 6 pretrain on {len(rest)} unlabelled images (pool)" in r.output
    config = json.loads((prepared / "models/generators/vae/config.json").read_text())
    assert config["pretrain"]["images"] == len(rest) and config["steps"] == 12
    assert config["pretrain"]["pretrain_steps"] == 6 and config["pretrain"]["adapt_steps"] == 6
    assert config["config"]["pretrain"] == {"source": "pool", "steps": 6}
    summary = json.loads((prepared / "metrics/generators/vae/metrics.json").read_text())
    assert summary["pretrain_steps"] == 6 and summary["adapt_steps"] == 6
    history = json.loads((prepared / "metrics/generators/vae/history.json").read_text())
    assert [(h["step"], h["phase"]) for h in history] == [
        (2, "pretrain"), (4, "pretrain"), (6, "pretrain"), (8, "adapt"), (10, "adapt"), (12, "adapt")]
    assert "val_vae_loss" in history[2]  # the end of pretraining is validated (and checkpointed)
    w = load_file(str(prepared / "models/generators/vae/weights.safetensors"))
    assert w["embed.weight"].shape[0] == 11  # ten digits and the null label
    # the saved generator loads and samples its classes
    from synthaug.generators.common import load_generator, sample_images

    model, _ = load_generator(prepared / "models/generators/vae")
    assert sample_images(model, [0, 9], torch.Generator().manual_seed(0)).shape == (2, 8, 8, 1)


def test_the_stage_resumes_in_the_pretraining_phase(prepared, run_cli, monkeypatch):
    assert run_cli(prepared, "train-generator", "vae", "--no-progress").exit_code == 0
    reference = load_file(str(prepared / "models/generators/vae/weights.safetensors"))
    real_steps = GeneratorTrainer.train_steps

    def dies_after_step_4(self, n, bar=None):
        if self.step == 4:
            raise KeyboardInterrupt  # the checkpoint of step 4 (mid-pretraining) is on disk
        return real_steps(self, n, bar)

    monkeypatch.setattr(GeneratorTrainer, "train_steps", dies_after_step_4)
    assert run_cli(prepared, "train-generator", "vae", "--no-progress").exit_code != 0
    monkeypatch.setattr(GeneratorTrainer, "train_steps", real_steps)
    r = run_cli(prepared, "train-generator", "vae", "--no-progress")
    assert r.exit_code == 0 and "resuming from step 4" in r.output, r.output
    resumed = load_file(str(prepared / "models/generators/vae/weights.safetensors"))
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_a_bad_folder_stops_the_stage_with_one_line(prepared, run_cli, tmp_path):
    r = run_cli(prepared, "train-generator", "vae", "-S",
                f"train_generator.vae.pretrain.source=folder:{tmp_path / 'nowhere'}")
    one_line_error(r, "train_generator.vae.pretrain.source", "not found")


def test_when_points_pretrain_on_the_rest_of_the_pool():
    """`unlabelled: pretrain`: the synthesize callback gets the split and, apart, the pool's
    images outside it (no labels); the generator trained from them pretrains, then adapts."""
    from synthaug.generators.config import SetConfig
    from synthaug.generators.lowdata import synthesizer
    from synthaug.pipeline.augment.config import AugmentConfig
    from synthaug.pipeline.data.config import ComposeConfig
    from synthaug.pipeline.data.storage import PackedDataset
    from synthaug.pipeline.experiments.sweep import Point, SweepData, split_of, when_set

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    images = rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8)
    pool = PackedDataset(images, labels, NAMES, {"prepare": {"seed": 3, "train_per_class": 4}})
    data = SweepData(split_of(pool, 4), split_of(pool, 2), split_of(pool, 2), pool, {})
    compose = ComposeConfig()
    assert compose.variants["real+vae-pretrained"].unlabelled == "pretrain"
    calls = []
    sets = {"vae-prior": SetConfig(generator="vae")}
    cfg = TrainGeneratorConfig.model_validate({"vae": {**TINY["vae"], "pretrain": {"steps": 4}}})
    lines = []
    make = synthesizer(["vae-prior"], sets, cfg, split_of(pool, 2), 4, 16, 0,
                       torch.device("cpu"), log=lines.append)

    def synthesize(k, split, tag="", rest=None):
        calls.append((k, len(split), tag, None if rest is None else rows(rest)))
        return make(k, split, tag, rest)

    x, y, *_ = when_set(Point("when", 4, 0, "real+vae-pretrained"), data, compose,
                        AugmentConfig(), synthesize)
    (k, n, tag, rest), = calls
    assert (k, n, tag) == (4, 12, "pretrain")
    assert len(rest) == 18 and not rest & rows(split_of(pool, 4).images)
    assert lines == ["when k=4: training vae on 12 images after 18 unlabelled ones (pool)"]
    assert len(y) == 24  # real + as many synthetic images
    assert len(make(4, split_of(pool, 4), "pretrain", None)["vae-prior"]) == 12  # cached per tag
    when_set(Point("when", 4, 0, "real+vae"), data, compose, AugmentConfig(), synthesize)
    assert calls[-1][2] == "" and lines[-1] == "when k=4: training vae on 12 images"
