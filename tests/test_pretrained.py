"""The pretrained-pipeline family (generators/pretrained.py) end to end, offline: a tiny Stable
Diffusion pipeline of random weights is built here (as diffusers' own pipeline tests build
theirs, `get_dummy_components`), saved to a folder and loaded by path through the sample stage,
text-to-image and img2img on the CPU. Needs the `pretrained` extra (transformers, for CLIP)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("transformers")
pytestmark = pytest.mark.pretrained  # `pytest -m pretrained` (CI runs it, with the extra)

from conftest import one_line_error  # noqa: E402
from synthaug.pipeline.data.storage import read_dataset, write_dataset  # noqa: E402

CLASSES = ["top", "middle", "bottom"]
SIDE = 12  # the prepared images: 12 x 12 x 1
RESOLUTION = 16  # the pipeline's: the tiny VAE halves it once, the tiny UNet once more
MAX_TOKENS = 32  # the prompts' characters, each a token, and two more


def tiny_tokenizer(folder: Path):
    """A CLIP tokenizer of single characters (no merges), written here: no download."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    # read as a saved tokenizer's files: the constructor's arguments differ between
    # transformers 4 (file paths) and 5 (the vocabulary itself)
    return CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    """A folder with a saved StableDiffusionPipeline of random weights (about 170 KB)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("pipeline")
    tokenizer = tiny_tokenizer(root / "tokenizer-files")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=RESOLUTION // 2,
        in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
        norm_num_groups=2, attention_head_dim=2)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    vae = AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=8, intermediate_size=16,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=len(tokenizer.get_vocab()),
        max_position_embeddings=MAX_TOKENS))
    pipe = StableDiffusionPipeline(unet=unet, scheduler=scheduler, vae=vae,
                                   text_encoder=text_encoder, tokenizer=tokenizer,
                                   safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "sd-tiny")
    return root / "sd-tiny"


PRETRAINED = {"resolution": RESOLUTION, "steps": 4, "batch_size": 4,
              "prompts": {"bottom": "a photo of the bottom bar"}}
SETS = {"sd-t2i": {"generator": "pretrained", "sampler": "prior", "per_class": 3},
        "sd-i2i": {"generator": "pretrained", "sampler": "img2img", "strength": 0.5,
                   "guidance_scale": 5.0, "per_class": 6}}


@pytest.fixture
def project(tmp_path, tiny_pipeline, monkeypatch):
    """A folder with a tiny prepared train split (3 classes x 4 grey images of 12 x 12) and a
    params.yaml whose sets draw from the tiny pipeline; the Hub is out of reach."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        labels = np.repeat(np.arange(3), n)
        images = rng.integers(0, 60, (len(labels), SIDE, SIDE, 1), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 4 * label:4 * label + 4, 2:10] = 220
        folder = tmp_path / "data" / "prepared" / split
        folder.mkdir(parents=True)
        write_dataset(folder, images, labels, CLASSES)
    params = {"sample": {"device": "cpu", "walk_steps": 3, "sets": SETS,
                         "pretrained": {"model": str(tiny_pipeline), **PRETRAINED}},
              "compose": {"variants": {"real": {"parts": ["real"]},
                                       "real+sd": {"parts": ["real", "sd-i2i"], "ratio": 1.0,
                                                   "use": {"replace_p": 0.5}}}},
              "study": {"variants": ["real"]},
              "sweep": {"ratio_variant": "real+sd", "when_variants": ["real"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_text_to_image_and_img2img_sets_end_to_end(run_cli, project, tiny_pipeline):
    r = run_cli(project, "sample")
    assert r.exit_code == 0, r.output
    train = read_dataset(project / "data/prepared/train", mmap=False)
    t2i = read_dataset(project / "data/synthetic/sd-t2i", mmap=False, manifest=True)
    i2i = read_dataset(project / "data/synthetic/sd-i2i", mmap=False, manifest=True)
    for s, per_class in ((t2i, 3), (i2i, 6)):
        assert s.images.dtype == np.uint8 and s.images.shape == (3 * per_class, SIDE, SIDE, 1)
        assert s.labels.tolist() == np.repeat(np.arange(3), per_class).tolist()
        assert s.class_names == CLASSES
        assert s.meta["generator_trained_on"]["content_hash"] == train.meta["content_hash"]
        assert s.meta["pretrained"]["model"] == str(tiny_pipeline)
        assert s.images.std() > 0  # drawn, not blank
    prompts = [row["prompt"] for row in t2i.manifest]
    assert prompts == ["a photo of a top"] * 3 + ["a photo of a middle"] * 3 + \
        ["a photo of the bottom bar"] * 3
    assert all("parent" not in row or row["parent"] == "" for row in t2i.manifest)
    # img2img: every image keeps its parent, a real image of its own class; 6 per class over
    # 4 real images each: every real image is a parent, once or twice
    parents = np.array([int(row["parent"]) for row in i2i.manifest])
    assert (train.labels[parents] == i2i.labels).all()
    assert sorted(np.bincount(parents, minlength=len(train)).tolist()) == [1] * 6 + [2] * 6
    row = i2i.manifest[0]
    assert (float(row["strength"]), float(row["guidance_scale"]), int(row["sample_steps"])) == \
        (0.5, 5.0, 4)
    assert (project / "data/synthetic/sd-i2i/walk.png").is_file()  # rising strength
    assert (project / "data/synthetic/sd-t2i/grid.png").is_file()
    assert not (project / "data/synthetic/sd-t2i/interpolation.png").exists()
    assert not (project / "checkpoints" / "sample").exists() or \
        not any((project / "checkpoints" / "sample").iterdir())  # resume state gone
    # the img2img set works as DA-Fusion's recipe: compose keeps the parents for replace_p
    r = run_cli(project, "compose", "-S", "study.variants=[real+sd]")
    assert r.exit_code == 0, r.output
    from synthaug.pipeline.classifiers.use import Use

    variant = read_dataset(project / "data/variants/real+sd", mmap=False, manifest=True)
    use = Use.of(variant.meta, variant.manifest)
    synthetic = np.flatnonzero(use.synthetic)
    assert len(synthetic) == len(train) and (use.parent[synthetic] >= 0).all()
    assert (variant.labels[use.parent[synthetic]] == variant.labels[synthetic]).all()


def rgb_train(n_per_class: int = 2, side: int = 10):
    from synthaug.pipeline.data.storage import PackedDataset

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), n_per_class)
    images = rng.integers(0, 256, (len(labels), side, side, 3), dtype=np.uint8)
    return PackedDataset(images, labels, CLASSES, {"content_hash": "abc"})


@pytest.fixture(scope="module")
def pretrained(tiny_pipeline):
    """pretrained(**changes) -> a Pretrained of the tiny pipeline with these settings, all
    sharing one loaded pipeline (the tests that draw without the CLI)."""
    import torch

    from synthaug.generators.config import PretrainedConfig
    from synthaug.generators.pretrained import Pretrained, load_pipeline

    cpu = torch.device("cpu")
    pipe = load_pipeline(PretrainedConfig(model=str(tiny_pipeline)), cpu)
    return lambda **changes: Pretrained(
        PretrainedConfig(model=str(tiny_pipeline), **{**PRETRAINED, **changes}), cpu, pipe)


class Killed(Exception):
    pass


def test_a_killed_draw_resumes_after_its_last_batch(pretrained, tmp_path):
    """A draw that dies in its third batch continues from image 8, and its set equals an
    uninterrupted draw's; RGB images keep 3 channels at the split's size."""
    from synthaug.generators.config import SetConfig
    from synthaug.generators.pretrained import PretrainedSampler

    train, cfg = rgb_train(), SetConfig(generator="pretrained", sampler="img2img", strength=0.75)
    whole = pretrained().draw("s", cfg, train, 7, 4)  # 12 images, in memory
    assert whole.images.shape == (12, 10, 10, 3)
    calls, real_generate = [], PretrainedSampler.generate

    def dies_in_third(self, *args, **kwargs):  # a kill mid-run: the fault, not a result
        calls.append(len(args[0]))
        if len(calls) == 3:
            raise Killed
        return real_generate(self, *args, **kwargs)

    work = tmp_path / "work"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(PretrainedSampler, "generate", dies_in_third)
        with pytest.raises(Killed):
            pretrained().draw("s", cfg, train, 7, 4, work)
        assert sorted(p.name for p in work.glob("batch_*")) == ["batch_0000000.npz",
                                                                 "batch_0000004.npz"]
        calls.clear()
        lines = []
        again = pretrained().draw("s", cfg, train, 7, 4, work, log=lines.append)
    assert calls == [4]  # only the last batch was drawn again
    assert "resuming after 8 images" in lines[0]
    assert np.array_equal(again.images, whole.images)
    assert [r["parent"] for r in again.provenance] == [r["parent"] for r in whole.provenance]
    # another setting is another run: it starts over (and the folder holds only its batches)
    other = SetConfig(generator="pretrained", sampler="img2img", strength=0.5)
    lines = []
    pretrained().draw("s", other, train, 7, 4, work, log=lines.append)
    assert not any("resuming" in line for line in lines)
    pretrained().close(work)
    assert not work.exists()


def test_images_do_not_depend_on_the_batch_size(pretrained):
    from synthaug.generators.config import SetConfig

    train, cfg = rgb_train(), SetConfig(generator="pretrained", sampler="prior")
    a = pretrained(batch_size=1).draw("s", cfg, train, 3, 2).images
    b = pretrained(batch_size=6).draw("s", cfg, train, 3, 2).images
    assert a.shape == (6, 10, 10, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # float rounding at most
    c = pretrained().draw("s", cfg, train, 4, 2).images  # another seed
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1


def test_an_uncached_hub_id_without_download_is_one_line(run_cli, project):
    r = run_cli(project, "sample", "-S", "sample.pretrained.model=someone/not-cached-sd")
    one_line_error(r, "sample.pretrained.model", "'someone/not-cached-sd'",
                   "sample.pretrained.download: true")
    assert not (project / "data/synthetic").exists()
    r = run_cli(project, "sample", "-S", f"sample.pretrained.model={project / 'no-such'}")
    one_line_error(r, "sample.pretrained.model", "not found")
    # download allowed, but the Hub out of reach (HF_HUB_OFFLINE): still one line
    r = run_cli(project, "sample", "-S", "sample.pretrained.model=someone/not-cached-sd",
                "-S", "sample.pretrained.download=true")
    one_line_error(r, "sample.pretrained.model", "someone/not-cached-sd")


def test_check_names_a_pipeline_that_is_not_local(run_cli, project):
    r = run_cli(project, "check", "-S", "sample.pretrained.model=someone/not-cached-sd")
    assert r.exit_code == 2, r.output
    assert "sample.pretrained.download: true" in r.stderr


def test_check_plans_pretrained_sets_without_training(run_cli, project):
    """A when point of a pretrained set: no generator to train (none in the plan), and a note
    that the pipeline's time is not in the estimate."""
    r = run_cli(project, "check", "-S", "sweep.when_variants=[real+sd]", "-S", "sweep.ratios=[]",
                "-S", "sample.per_class=20")
    assert isinstance(r.exception, SystemExit | None), r.exception
    assert "note: pretrained sets (sd-i2i, sd-t2i) draw from" in r.output
    assert "sample.pretrained.model" not in r.stderr
    plan = [line for line in r.output.splitlines() if line.startswith("plan: generators:")]
    assert plan and "pretrained" not in plan[0], plan


@pytest.mark.parametrize("change, fragment", [
    ({"sample.sets.sd-t2i.sampler": "slerp"}, "does not apply to a pretrained pipeline"),
    ({"sample.pretrained.model": ""}, "pretrained.model: set 'sd-"),
    ({"sample.pretrained.prompt": "a {nme}"}, "prompt: 'a {nme}' is not a prompt template"),
    ({"sample.sets.sd-t2i.sigma": 0.3}, "sigma applies to the posterior_jitter sampler only"),
])
def test_bad_pretrained_params_are_one_line(run_cli, project, change, fragment):
    args = [a for k, v in change.items() for a in ("-S", f"{k}={json.dumps(v)}")]
    one_line_error(run_cli(project, "sample", *args), fragment)


def test_a_prompt_for_an_unknown_class_is_one_line(run_cli, project):
    r = run_cli(project, "sample", "sd-t2i", "-S", "sample.pretrained.prompts={seven: 'a 7'}")
    one_line_error(r, "sample.pretrained.prompts", "'seven'")


def test_train_generator_says_a_pretrained_pipeline_needs_no_training(run_cli, project):
    one_line_error(run_cli(project, "train-generator", "pretrained"), "needs no training")


def test_when_points_draw_a_pretrained_set_from_their_split(tiny_pipeline):
    """The sweep's when points (generators.lowdata): a pretrained set trains nothing; img2img
    starts from the k-per-class split it is given."""
    import torch

    from synthaug.generators.config import PretrainedConfig, SetConfig, TrainGeneratorConfig
    from synthaug.generators.lowdata import synthesizer

    split = rgb_train(n_per_class=2)
    sets = {"sd": SetConfig(generator="pretrained", sampler="img2img", strength=0.5)}
    lines = []
    make = synthesizer(["sd"], sets, TrainGeneratorConfig(), split, 3, 500, 0,
                       torch.device("cpu"), log=lines.append,
                       pretrained=PretrainedConfig(model=str(tiny_pipeline), **PRETRAINED))
    drawn = make(2, split)["sd"]
    assert drawn.images.shape == (9, 10, 10, 3) and drawn.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    parents = np.array([row["parent"] for row in drawn.manifest])
    assert (split.labels[parents] == drawn.labels).all()
    assert not any("training" in line for line in lines)
    assert make(2, split)["sd"] is drawn  # drawn once per k


def test_an_img2img_set_without_a_denoising_step_is_one_line(run_cli, project):
    r = run_cli(project, "sample", "sd-i2i", "-S", "sample.sets.sd-i2i.strength=0.2")
    one_line_error(r, "sample.sets.sd-i2i", "0.2 x 4 < 1")
