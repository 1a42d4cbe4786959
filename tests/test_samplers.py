"""Latent-space samplers on tiny untrained generators: shapes, provenance, determinism, and
the geometry they rely on (slerp, truncation, interpolation ends, img2img strength)."""
import numpy as np
import pytest
import torch
from test_generators import TINY as TINY_GENERATORS  # the same tiny configs

from synthaug.generators.common import build_generator, sample_images
from synthaug.generators.config import DiffusionConfig, SetConfig
from synthaug.generators.latents import interpolation, latent_walks, slerp, to_hwc, truncated_noise
from synthaug.generators.samplers import build_sampler
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.compose import balanced_labels

TINY = {
    **TINY_GENERATORS,
    # pixels (an untrained autoencoder forgets its input) and epsilon prediction (an untrained
    # UNet's last steps barely move a lightly noised image): img2img's strength shows
    "epsilon": DiffusionConfig(space="pixel", channels=[8, 16], train_timesteps=50, sample_steps=5,
                               prediction="epsilon"),
}
CLASSES = ["a", "b", "c"]
SHAPE = (1, 12, 12)  # cropped from a 16 x 16 canvas; small keeps the file fast
# (model, sampler, settings) for every sampler and a family it applies to
CASES = [("gan", "prior", {}), ("gan", "truncated", {"psi": 0.5}), ("gan", "slerp", {}),
         ("vae", "prior", {}), ("vae", "truncated", {"psi": 0.5}), ("vae", "slerp", {}),
         ("vae", "posterior_jitter", {"sigma": 1.0}), ("vae", "gmm", {"components": 2}),
         ("diffusion", "prior", {"guidance_scale": 1.0, "sample_steps": 2}),
         ("diffusion", "truncated", {"psi": 0.5}), ("diffusion", "slerp", {}),
         ("diffusion", "img2img", {"strength": 0.5}), ("pixel", "prior", {}),
         ("pixel", "img2img", {"strength": 0.5, "guidance_scale": 1.5})]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny nets gain nothing from threads, and on shared cores they wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(one_thread):
    out = {}
    for name, cfg in TINY.items():
        torch.manual_seed(0)
        family = "gan" if name == "gan" else "vae" if name == "vae" else "diffusion"
        out[name] = build_generator(family, cfg, SHAPE, CLASSES).eval()
    with torch.no_grad():  # an untrained VAE decodes every latent to grey 0.5: spread its weights
        for p in out["vae"].parameters():
            p.normal_(0, 0.2)
    return out


@pytest.fixture(scope="module")
def train():
    """A tiny training split: 5 random images per class, classes interleaved."""
    rng = np.random.default_rng(0)
    labels = np.arange(15) % 3
    return rng.integers(0, 256, (15, 12, 12, 1), dtype=np.uint8), labels


def make(models, train, name, sampler, **settings):
    model = models[name]
    return build_sampler(model, SetConfig(generator=model.family, sampler=sampler, **settings)).fit(*train)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def test_balanced_labels():
    labels = balanced_labels(3, 4)
    assert labels.dtype == np.int64 and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert np.bincount(balanced_labels(10, 7)).tolist() == [7] * 10


@pytest.mark.parametrize(("name", "sampler", "settings"), CASES, ids=[f"{n}-{s}" for n, s, _ in CASES])
def test_sampler_images_provenance_and_determinism(models, train, name, sampler, settings):
    labels = balanced_labels(3, 3)
    s = make(models, train, name, sampler, **settings)
    images, rows = s.sample(labels, seeded(0), batch_size=4)  # batches of 4, 4 and 1
    assert images.dtype == np.uint8 and images.shape == (9, 12, 12, 1)
    assert len(rows) == 9
    family = models[name].family
    for label, row in zip(labels, rows):
        assert row["generator"] == family and row["sampler"] == sampler
        assert all(row[k] == v for k, v in settings.items())
        if sampler in ("posterior_jitter", "img2img"):
            assert 0 <= row["parent"] < len(train[1]) and train[1][row["parent"]] == label
        if sampler == "slerp":
            assert 0 <= row["t"] <= 1
    again, again_rows = s.sample(labels, seeded(0), batch_size=4)
    assert again.tobytes() == images.tobytes() and again_rows == rows
    fresh, _ = make(models, train, name, sampler, **settings).sample(labels, seeded(0), batch_size=4)
    assert fresh.tobytes() == images.tobytes()
    other, _ = s.sample(labels, seeded(1), batch_size=4)
    assert other.tobytes() != images.tobytes()


@pytest.mark.parametrize("name", ["gan", "vae", "diffusion"])
def test_prior_sampler_draws_what_sample_images_draws(models, train, name):
    labels = balanced_labels(3, 2)
    images, _ = make(models, train, name, "prior").sample(labels, seeded(5), batch_size=4)
    assert np.array_equal(images, sample_images(models[name], labels, seeded(5), batch_size=4))


def test_slerp_end_points_norm_and_parallel_vectors():
    g = seeded(0)
    z1, z2 = torch.randn(6, 2, 3, generator=g), torch.randn(6, 2, 3, generator=g)
    assert torch.equal(slerp(z1, z2, 0.0), z1) and torch.equal(slerp(z1, z2, 1.0), z2)
    u1, u2 = z1.flatten(1), z2.flatten(1)
    u1, u2 = u1 / u1.norm(dim=1, keepdim=True), u2 / u2.norm(dim=1, keepdim=True)
    mid = slerp(u1, u2, torch.rand(6, generator=g))
    assert torch.allclose(mid.norm(dim=1), torch.ones(6), atol=1e-5)
    # on the great circle: the angles to both ends add up to the angle between them
    angle = lambda a, b: torch.arccos((a * b).sum(1).clamp(-1, 1))
    assert torch.allclose(angle(u1, mid) + angle(mid, u2), angle(u1, u2), atol=1e-4)
    same = slerp(u1, u1.clone(), 0.3)  # parallel: no great circle, linear interpolation
    assert torch.isfinite(same).all() and torch.allclose(same, u1, atol=1e-6)


def test_truncation_keeps_latents_inside_psi(models):
    for name in ("gan", "diffusion"):
        model = models[name]
        z = truncated_noise(model, (50, *model.latent_shape), 0.3, seeded(0))
        assert z.shape == (50, *model.latent_shape) and z.abs().max() <= 0.3
        assert z.std() > 0.1  # still random, not collapsed


@pytest.mark.parametrize("name", ["gan", "vae", "diffusion"])
def test_interpolation_ends_are_the_two_latents_images(models, name):
    model = models[name]
    z = model.noise((2, *model.latent_shape), seeded(0))
    strip = interpolation(model, z[0], z[1], 1, 5)
    assert strip.dtype == np.uint8 and strip.shape == (5, 12, 12, 1)
    with torch.no_grad():
        ends = to_hwc(model.generate(z, torch.tensor([1, 1])))
    # a batch of 5 or of 2 may round the last float bit differently: at most 1 grey level
    assert np.abs(strip[[0, -1]].astype(int) - ends).max() <= 1
    walks = latent_walks(model, seeded(3), 4)
    assert walks.shape == (12, 12, 12, 1)
    assert np.array_equal(walks, latent_walks(model, seeded(3), 4))


def test_samplers_that_need_data_refuse_to_sample_unfitted(models, train):
    for name, sampler in [("vae", "gmm"), ("vae", "posterior_jitter"), ("diffusion", "img2img")]:
        s = build_sampler(models[name], SetConfig(generator=models[name].family, sampler=sampler))
        with pytest.raises(SynthaugError, match="fit it on the training split"):
            s.sample(balanced_labels(3, 1), seeded(0))
    s = build_sampler(models["vae"], SetConfig(generator="vae", sampler="posterior_jitter"))
    with pytest.raises(SynthaugError, match="class 'c'"):  # no training image of class c
        s.fit(train[0][:10], np.arange(10) % 2).sample(np.array([2]), seeded(0))
    with pytest.raises(SynthaugError, match="do not fit"):
        s.fit(train[0][:, :10], train[1])


def test_sampler_family_mismatch_is_a_synthaug_error(models):
    with pytest.raises(SynthaugError, match="'gmm' needs a vae generator, not a gan one"):
        build_sampler(models["gan"], SetConfig(generator="vae", sampler="gmm"))
    with pytest.raises(SynthaugError, match="'img2img' needs a diffusion generator"):
        build_sampler(models["vae"], SetConfig(generator="diffusion", sampler="img2img"))
    with pytest.raises(SynthaugError, match="set is for a gan generator, not a vae one"):
        build_sampler(models["vae"], SetConfig(generator="gan"))


def test_img2img_small_strength_stays_near_the_parent(models, train):
    model = models["epsilon"]
    labels = balanced_labels(3, 2)
    dist = {}
    for strength in (0.2, 0.6, 1.0):
        s = make(models, train, "epsilon", "img2img", strength=strength)
        images, rows = s.sample(labels, seeded(0))
        parents = train[0][[r["parent"] for r in rows]].astype(float)
        dist[strength] = np.abs(images.astype(float) - parents).mean()
    assert dist[0.2] < dist[0.6] < dist[1.0] and dist[0.2] < 0.2 * dist[1.0], dist
    # strength 1 starts from the noise alone: plain sampling
    noise = model.noise((3, *model.latent_shape), seeded(1))
    x, y = torch.rand(3, *SHAPE, generator=seeded(2)), torch.tensor([0, 1, 2])
    with torch.no_grad():
        assert torch.equal(model.img2img(x, y, noise, 1.0), model.generate(noise, y))


def test_interpolation_strip_figure(tmp_path):
    from synthaug.pipeline.figures.data import interpolation_strip

    rows = np.random.default_rng(0).integers(0, 256, (3, 5, 12, 12, 1), dtype=np.uint8)
    interpolation_strip(rows, CLASSES, tmp_path / "walk.png", title="walks")
    interpolation_strip(rows[:1, :, :, :, [0, 0, 0]], ["rgb"], tmp_path / "one.png")
    assert (tmp_path / "walk.png").stat().st_size > 1000 and (tmp_path / "one.png").is_file()


def test_a_set_is_drawn_and_written_without_the_cli(models, train, tmp_path):
    """synthaug.generators.sets, the library under `synthaug sample`: seeded by the set's name, the
    packed set with provenance per image, and its three figures."""
    from synthaug.generators.sets import draw, set_seed, write
    from synthaug.pipeline.data.storage import PackedDataset, read_dataset

    assert set_seed(0, "vae-prior") != set_seed(0, "vae-gmm") != set_seed(1, "vae-gmm")
    split = PackedDataset(train[0], train[1], CLASSES, {"source": "tiny"})
    cfg = SetConfig(generator="vae", sampler="posterior_jitter", sigma=1.0)
    seed = set_seed(0, "vae-jitter")
    drawn = draw(models["vae"], "vae-jitter", cfg, split, seed, per_class=2, batch_size=4)
    again = draw(models["vae"], "vae-jitter", cfg, split, seed, per_class=2, batch_size=4)
    assert np.array_equal(drawn.images, again.images)  # the seed decides
    assert drawn.labels.tolist() == [0, 0, 1, 1, 2, 2] and drawn.images.dtype == np.uint8
    write(tmp_path, drawn, split, {"trained_on": {"content_hash": "h"}}, walk_steps=3)
    ds = read_dataset(tmp_path, manifest=True)
    assert ds.meta["set"] == "vae-jitter" and ds.meta["seed"] == seed
    assert ds.meta["generator_trained_on"] == {"content_hash": "h"} and ds.meta["source"] == "tiny"
    assert {row["set"] for row in ds.manifest} == {"vae-jitter"} and all(
        row["sampler"] == "posterior_jitter" for row in ds.manifest)
    for figure in ("grid.png", "walk.png", "interpolation.png"):
        assert (tmp_path / figure).stat().st_size > 500, figure
