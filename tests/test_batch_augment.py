"""Batched on-device augmentation: per-image randomness, seeding, identity, layouts and dtypes,
probabilities, and the affine against torchvision."""
import re

import pytest
import torch

from synthaug.pipeline.augment.batch import BatchAugment, affine_theta, warp
from synthaug.pipeline.augment.config import BATCH_PRESETS, BatchAugmentConfig, BatchAugmentSpec, resolve_batch_augment
from synthaug.pipeline.core.settings import Section
from synthaug.stages.params import load_params
from synthaug.pipeline.core.errors import SynthaugError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def digits(n=8, h=28, w=28, device="cpu"):
    """Bright bars on black, a different position per image."""
    x = torch.zeros(n, 1, h, w, device=device)
    for i in range(n):
        x[i, :, 4 + i % 8:14 + i % 8, 9:17] = 0.8
    return x


def gen(seed, device="cpu"):
    return torch.Generator(device).manual_seed(seed)


@pytest.mark.parametrize("device", DEVICES)
def test_each_image_gets_its_own_draw(device):
    x = digits(1, device=device).repeat(64, 1, 1, 1)
    out = BatchAugment("medium")(x, gen(0, device))
    distinct = {tuple(img.flatten().tolist()) for img in out.round(decimals=4).cpu()}
    assert len(distinct) >= 60  # p_affine = 0.9: a handful may be left untouched


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_batch_other_seed_other_batch(device):
    x, aug = digits(32, device=device), BatchAugment("heavy")
    a, b, c = aug(x, gen(1, device)), aug(x, gen(1, device)), aug(x, gen(2, device))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = gen(1, device)
    assert not torch.equal(aug(x, g), aug(x, g))  # the generator advances: fresh draws


def test_global_rng_is_not_used():
    x, aug = digits(16), BatchAugment("medium")
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = aug(x, gen(3))
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(123)
    assert torch.equal(aug(x, gen(3)), a)


def test_identity_config_returns_the_input_exactly():
    x = torch.rand(16, 3, 20, 24)
    out = BatchAugment(BatchAugmentConfig())(x, gen(0))
    assert torch.equal(out, x) and out is not x
    # p = 0 for one op leaves the others, and images an op skips are untouched bit for bit
    cfg = BatchAugmentConfig(erase_p=0.5, erase_scale=(0.05, 0.1))
    out = BatchAugment(cfg)(x, gen(0))
    same = (out == x).flatten(1).all(1)
    assert 0 < same.sum() < len(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_shape_dtype_layout_range(dtype, channels_last, device):
    x = torch.rand(12, 3, 16, 20, device=device).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x0 = x.clone()
    for name in BATCH_PRESETS:
        out = BatchAugment(name)(x, gen(0, device))
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
        assert out.stride() == x.stride()
        assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, x0)  # the input is never modified


def test_probabilities_are_per_image():
    n = 2000
    x = torch.ones(n, 1, 16, 16)
    out = BatchAugment(BatchAugmentConfig(erase_p=0.5, erase_scale=(0.02, 0.1)))(x, gen(0))
    erased = (out == 0).flatten(1).any(1).float().mean().item()
    assert 0.45 < erased < 0.55
    out = BatchAugment(BatchAugmentConfig(noise_p=0.2, noise_sigma=0.05))(x * 0.5, gen(0))
    noisy = (out != 0.5).flatten(1).any(1).float().mean().item()
    assert 0.16 < noisy < 0.24
    out = BatchAugment(BatchAugmentConfig(jitter_p=0.7, brightness=0.3))(x * 0.5, gen(0))
    jittered = (out != 0.5).flatten(1).any(1).float().mean().item()
    assert 0.65 < jittered < 0.75


def test_erased_area_within_erase_scale():
    x = torch.ones(500, 1, 20, 20)
    out = BatchAugment(BatchAugmentConfig(erase_p=1.0, erase_scale=(0.05, 0.1)))(x, gen(0))
    frac = (out == 0).flatten(1).float().mean(1)
    assert frac.min() >= 0.03 and frac.max() <= 0.13  # rounding to whole pixels
    assert frac.std() > 0.005  # sizes vary per image


def test_affine_matches_torchvision():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x = torch.zeros(1, 1, 28, 36)
    x[..., 6:12, 8:20], x[..., 15:22, 20:30] = 1.0, 0.6
    for angle, shift, scale, shear in [(30, (0, 0), 1.0, 0), (-45, (3, -2), 1.1, 0),
                                       (10, (2, 1), 0.9, 8)]:
        theta = affine_theta(torch.tensor([float(angle)]), torch.tensor([shift], dtype=torch.float),
                             torch.tensor([scale]), torch.tensor([[float(shear), 0.0]]), (28, 36))
        ref = TF.affine(x, angle=-angle, translate=list(shift), scale=scale, shear=[-shear, 0],
                        interpolation=InterpolationMode.BILINEAR)
        assert torch.allclose(warp(x, theta), ref, atol=1e-4)
    theta = affine_theta(torch.tensor([90.0]), torch.zeros(1, 2), torch.ones(1), torch.zeros(1, 2),
                         (28, 36))
    ref = TF.rotate(x, 90.0, interpolation=InterpolationMode.BILINEAR)
    assert torch.allclose(warp(x, theta), ref, atol=1e-4)


def test_rotation_moves_the_mass_centre_by_the_angle():
    """rotate=30 with p=1: an off-centre blob stays at its distance from the centre and turns
    by at most 30 degrees, and the angles spread over that range."""
    n, size = 256, 33
    x = torch.zeros(n, 1, size, size)
    x[..., 4:9, 14:19] = 1.0  # above the centre (16, 16)
    out = BatchAugment(BatchAugmentConfig(rotate=30, p_affine=1.0))(x, gen(0))
    coords = torch.arange(size, dtype=torch.float) - (size - 1) / 2
    mass = out.sum((1, 2, 3))
    cy = (out.sum((1, 3)) * coords).sum(1) / mass
    cx = (out.sum((1, 2)) * coords).sum(1) / mass
    radius = torch.hypot(cx, cy)
    angle = torch.rad2deg(torch.atan2(-cx, -cy))  # 0: straight up, > 0: counter-clockwise
    assert torch.allclose(radius, torch.full_like(radius, 10.0), atol=0.3)
    assert angle.abs().max() <= 30.5 and angle.min() < -20 and angle.max() > 20


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_generator_on_another_device_is_refused():
    with pytest.raises(ValueError, match="the generator is on cpu, the batch on cuda"):
        BatchAugment("light")(digits(2, device="cuda"), gen(0))


def test_presets_and_spec_validation():
    assert set(BATCH_PRESETS) == {"light", "medium", "heavy"}
    cfg = resolve_batch_augment("medium")
    assert cfg == BATCH_PRESETS["medium"] and cfg is not BATCH_PRESETS["medium"]
    assert resolve_batch_augment({"rotate": 5, "p_affine": 1}).rotate == 5
    with pytest.raises(SynthaugError, match="unknown preset 'mediun'; allowed: light, medium"):
        resolve_batch_augment("mediun")

    class T(Section):
        spec: BatchAugmentSpec | None = None

    t = T(spec={"rotate": 10, "p_affine": 1})
    assert T.model_validate(t.model_dump(mode="json")) == t  # round-trips through YAML/JSON


@pytest.mark.parametrize("override,fragment", [
    ("train.batch_augment={rotat: 10}", "train.batch_augment: rotat: unknown key"),
    ("train.batch_augment={scale: [1.2, 0.9]}", "train.batch_augment: scale: expected (min, max)"),
    ("train.batch_augment={erase_p: 2}", "train.batch_augment: erase_p: Input should be less"),
    ("train.batch_augment=big", "train.batch_augment: unknown preset 'big'"),
])
def test_params_errors_are_one_line(repo_root, override, fragment):
    with pytest.raises(SynthaugError, match=re.escape(fragment)):
        load_params(repo_root / "params.yaml", [override])
    p = load_params(repo_root / "params.yaml", ["train.batch_augment=medium"])
    assert resolve_batch_augment(p.train.batch_augment) == BATCH_PRESETS["medium"]
