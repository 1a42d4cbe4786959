"""The generator families on tiny settings: losses, gradients, samples, save/load."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from synthaug.generators.common import (
    build_generator,
    load_generator,
    sample_images,
    save_generator,
)
from synthaug.generators.config import DiffusionConfig, GANConfig, VAEConfig
from synthaug.pipeline.core.errors import SynthaugError

TINY = {
    "gan": GANConfig(width=8, latent_dim=8, embed_dim=4),
    "vae": VAEConfig(width=8, latent_dim=4, embed_dim=4),
    "diffusion": DiffusionConfig(mlp_width=16, mlp_blocks=2, autoencoder_width=8,
                                 latent_channels=4, train_timesteps=50, sample_steps=3),
    "latent-unet": DiffusionConfig(denoiser="unet", channels=[16, 32], autoencoder_width=8,
                                   latent_channels=4, train_timesteps=50, sample_steps=3),
    "pixel": DiffusionConfig(space="pixel", channels=[8, 16], train_timesteps=50, sample_steps=2),
}
CLASSES = ["a", "b", "c"]


def tiny(name: str, shape=(1, 28, 28)):
    torch.manual_seed(0)
    family = "diffusion" if name in ("pixel", "latent-unet") else name
    return build_generator(family, TINY[name], shape, CLASSES)


def batch(shape=(1, 28, 28), n=6):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, *shape, generator=g), torch.arange(n) % len(CLASSES)


@pytest.mark.parametrize("name", list(TINY))
def test_losses_finite_and_gradients_flow(name):
    model = tiny(name)
    x, y = batch()
    parts = model.parts()
    # the latent diffusion model trains its autoencoder first, then the denoiser
    assert [p for step in (0, 10**6) for p in model.active_parts(step)] == (
        ["autoencoder", "denoiser"] if name in ("diffusion", "latent-unet") else
        ["discriminator", "generator"] * 2 if name == "gan" else list(parts) * 2)
    for part, spec in parts.items():
        model.zero_grad()
        losses = model(x, y, part, torch.Generator().manual_seed(1))
        assert all(torch.isfinite(v).all() for v in losses.values()), losses
        losses["loss"].backward()
        grads = [p.grad for p in spec["params"]]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), part
        moving = sum(bool(g.abs().sum() > 0) for g in grads)
        assert moving >= 0.9 * len(grads), f"{part}: {moving}/{len(grads)} tensors get gradient"


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)])
def test_sample_shape_dtype_and_labels_matter(name, shape):
    model = tiny(name, shape).eval()
    labels = torch.tensor([0, 1, 2, 0])
    out = model.sample(labels, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and tuple(out.shape) == (4, *shape)
    # same noise, other labels: other images (compared before rounding to uint8)
    with torch.no_grad():
        a = model.draw(labels, torch.Generator().manual_seed(0))
        b = model.draw(torch.tensor([1, 2, 0, 1]), torch.Generator().manual_seed(0))
    assert a.shape == (4, *shape) and not torch.allclose(a, b)
    hwc = sample_images(model, [2, 1], torch.Generator().manual_seed(0))
    assert hwc.dtype == np.uint8 and hwc.shape == (2, shape[1], shape[2], shape[0])


@pytest.mark.parametrize("name", list(TINY))
def test_save_load_round_trip_gives_the_same_samples(name, tmp_path):
    model = tiny(name)
    x, y = batch()
    for part in model.parts():  # move the weights (and BN statistics) off their init
        model(x, y, part, torch.Generator().manual_seed(0))["loss"].backward()
    model.eval().to(memory_format=torch.channels_last)  # the layout it trains and loads in
    save_generator(tmp_path / "g", model, {"note": 1})
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["config.json", "weights.safetensors"]
    loaded, config = load_generator(tmp_path / "g")
    assert config["family"] == model.family and config["note"] == 1
    assert loaded.config == model.config and loaded.shape == model.shape
    labels = torch.tensor([0, 1, 2, 2, 1])
    a = model.sample(labels, torch.Generator().manual_seed(7))
    b = loaded.sample(labels, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    with torch.no_grad():  # another seed, other images (before rounding to uint8)
        c = loaded.draw(labels, torch.Generator().manual_seed(8))
        assert not torch.allclose(c, loaded.draw(labels, torch.Generator().manual_seed(7)))


def test_vae_encode_decode_for_latent_samplers():
    model = tiny("vae").eval()
    x, y = batch()
    mu, logvar = model.encode(x, y)
    assert mu.shape == logvar.shape == (6, TINY["vae"].latent_dim)
    images = model.decode(mu, y)
    assert images.shape == x.shape and images.min() >= 0 and images.max() <= 1


def test_unknown_family_and_impossible_unet_fail_with_one_line():
    with pytest.raises(SynthaugError, match=r"^generator: unknown generator 'flow'; allowed: gan, vae, diffusion$"):
        build_generator("flow", TINY["gan"], (1, 28, 28), CLASSES)
    cfg = DiffusionConfig(channels=[8, 8, 8, 8], denoiser="unet")  # cannot halve 4 x 4 3 times
    with pytest.raises(SynthaugError, match="train_generator.diffusion.channels"):
        build_generator("diffusion", cfg, (1, 28, 28), CLASSES)


def test_load_rejects_a_classifier_folder(tmp_path):
    from synthaug.pipeline.core.checkpoint import save_folder

    save_folder(tmp_path / "c", {"kind": "classifier"}, {"w": torch.zeros(1)})
    with pytest.raises(SynthaugError, match="not a generator folder"):
        load_generator(tmp_path / "c")


def test_config_module_is_torch_free_and_imports_on_its_own(repo_root):
    code = ("import sys, synthaug.generators.config as c; from synthaug.stages.params import Params; "
            "assert Params().train_generator == c.TrainGeneratorConfig(); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], check=False, cwd=repo_root, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


def bars(n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """28 x 28 images of a bright bar whose height is the class, on dim noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    images = rng.integers(0, 40, (len(labels), 28, 28, 1), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 4 + 8 * label:10 + 8 * label, 4:24] = 220
    return images, labels


# family -> (config, steps, the losses that must fall: history key -> (first rows, last rows))
LEARNS = {
    "gan": (GANConfig(steps=120, batch_size=16, width=8, latent_dim=8, embed_dim=4),
            ["discriminator_aux"]),  # D learns the classes (G's follow later)
    "vae": (VAEConfig(steps=120, batch_size=16, width=8, latent_dim=4, embed_dim=4,
                      kl_warmup_steps=0), ["vae_loss"]),
    "diffusion": (DiffusionConfig(steps=120, autoencoder_steps=120, batch_size=16, mlp_width=64,
                                  mlp_blocks=2, autoencoder_width=8, latent_channels=4,
                                  warmup_steps=0), ["autoencoder_loss", "denoiser_loss"]),
}


@pytest.mark.parametrize("family", list(LEARNS))
def test_tiny_training_makes_the_losses_fall(family):
    """A few hundred steps on a toy set: each part's loss falls (the GAN's: the class losses,
    as its adversarial ones need not), and samples come out in the data's shape."""
    from synthaug.generators.config import TrainGeneratorConfig
    from synthaug.generators.training import GeneratorTrainer

    fcfg, keys = LEARNS[family]
    cfg = TrainGeneratorConfig(**{family: fcfg})
    x, y = bars(16)
    torch.manual_seed(0)
    model = build_generator(family, fcfg, (1, 28, 28), CLASSES)
    trainer = GeneratorTrainer(model, cfg, (x, y), (x[::4], y[::4]), torch.device("cpu"),
                               torch.Generator().manual_seed(0))
    rows = []
    while not trainer.done:
        rows.append(trainer.train_steps(20))
    for key in keys:
        seen = [r[key] for r in rows if key in r]
        assert len(seen) >= 3 and seen[-1] < 0.7 * seen[0], (key, seen)
    out = sample_images(trainer.ema, [0, 1, 2, 2], torch.Generator().manual_seed(0))
    assert out.dtype == np.uint8 and out.shape == (4, 28, 28, 1)
