"""Quality metrics on small real data (mnist5k): references rank as they must, the memorisation
check flags copies and not held-out images, and the formulas match hand computations."""
import math

import numpy as np
import pytest
import torch

from synthaug.pipeline.classifiers.config import TrainConfig

from synthaug.pipeline.data.config import PrepareConfig

from synthaug.pipeline.quality.config import QualityConfig
from synthaug.pipeline.data.prepare import prepare_splits
from synthaug.pipeline.quality.distribution import equal_size, fid_kid, prdc
from synthaug.pipeline.quality.features import FeatureExtractor, features, imagenet_extractor
from synthaug.pipeline.quality.memorisation import near_copies, nearest_train, train_radius
from synthaug.pipeline.quality.assess import QualityContext, assess, noise_set
from synthaug.pipeline.quality.assess import judge_recipe as recipe
from synthaug.pipeline.quality.usefulness import cas, gate
from synthaug.pipeline.data.sources import load_source
from synthaug.pipeline.classifiers.trainer import train_classifier

CPU = torch.device("cpu")
NAMES = [str(i) for i in range(10)]
# a short recipe: the metrics are under test, not the classifier. (A judge trained much less,
# e.g. 3 x 1,024 samples, maps noise onto a few real images' large k-NN balls: precision 0.9.)
Q = QualityConfig(epochs=4, k=3, kid_subset_size=50, imagenet_features=False, cas=False)
RECIPE = recipe(TrainConfig(batch_size=32, epoch_size=2048, patience=0, amp=False), Q)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The judge and the CAS classifiers train on one thread whatever ran before in this
    process: the thresholds below were set on one-thread runs (a two-thread judge, summing in
    another order, gave real-val a precision of 0.37 against the bound 0.4)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _take(split, n, seed):
    idx = np.sort(np.random.default_rng(seed).choice(len(split.labels), n, replace=False))
    return split.images[idx], split.labels[idx]


@pytest.fixture(scope="module")
def data():
    cfg = PrepareConfig(source="mnist5k", train_per_class=30)
    splits = prepare_splits(load_source(cfg, "unused"), cfg)
    return ((splits["train"].images, splits["train"].labels), _take(splits["val"], 200, 1),
            _take(splits["test"], 300, 2))


@pytest.fixture(scope="module")
def ctx(data):
    train, val, test = data
    judge, architecture, result = train_classifier(*train, val, NAMES, RECIPE, {}, CPU)
    assert architecture["model"] == "cnn" and result.epochs_run == 4
    return QualityContext.build(train, val, test, judge, Q, RECIPE, {}, CPU, NAMES)


@pytest.fixture(scope="module")
def rows(ctx, data):
    """assess() of the real held-out split, noise and copies of training images."""
    _, val, _ = data
    train_x, train_y = ctx.train
    rng = np.random.default_rng(0)
    pick = rng.choice(len(train_y), 100, replace=False)
    exact = train_x[pick]
    noisy = np.clip(exact.astype(int) + rng.integers(-8, 9, exact.shape), 0, 255).astype(np.uint8)
    copies = (np.concatenate([exact, noisy]), np.concatenate([train_y[pick]] * 2))
    return {"real": assess("real-val", *val, ctx),
            "noise": assess("noise", *noise_set(20, (1, 28, 28), 10, 0), ctx),
            "copies": assess("copies", *copies, ctx)}


def test_recipe_takes_model_epochs_seed_from_quality():
    r = recipe(TrainConfig(model="lenet5", epochs=30, seed=5, online_augment="medium", lr=1e-3),
               QualityConfig(model="cnn", epochs=4, seed=9))
    assert (r.model, r.epochs, r.seed, r.online_augment, r.lr) == ("cnn", 4, 9, None, 1e-3)


def test_a_set_against_itself(ctx):
    f = ctx.train_feats
    scores = fid_kid(f, f, 50, seed=0)
    assert abs(scores["fid"]) < 1e-6 * float(f.var(0).sum())
    assert abs(scores["kid"]) < scores["kid_std"]
    m = prdc(f, f, k=3)
    assert m["precision"] == m["recall"] == m["coverage"] == 1.0
    assert 0.8 < m["density"] < 1.5


def test_noise_is_far_worse_than_a_held_out_real_split(rows, ctx):
    real, noise = rows["real"], rows["noise"]
    assert noise["fid_domain"] > 10 * real["fid_domain"]
    assert noise["kid_domain"] > real["kid_domain"] + 10 * real["kid_domain_std"]
    # A held-out real split scores 0.4-0.8 on these (it depends on the CPU's kernels and the
    # judge's threads); a broken metric or feature space puts real where noise is (< 0.1)
    for key in ("precision", "recall", "density", "coverage"):
        assert real[key] > 0.25 and noise[key] < 0.1, (key, real[key], noise[key])
    assert real["judge_accuracy"] > 0.7 and noise["judge_accuracy"] < 0.3
    assert real["cas"] is None and real["fid_lite0"] is None  # switched off in Q
    assert real["failing_classes"] == [] and len(noise["failing_classes"]) >= 5
    assert ctx.judge_test_accuracy > 0.7


def test_copies_of_training_images_are_flagged_and_held_out_images_are_not(rows, ctx):
    assert rows["copies"]["near_copy_fraction"] == 1.0
    assert rows["copies"]["nearest_median"] < 0.03
    assert rows["real"]["near_copy_fraction"] < 0.05
    assert rows["real"]["nearest_median"] > 0.1
    assert rows["noise"]["near_copy_fraction"] == 0.0
    # the exact copies find themselves
    exact = rows["copies"]["nearest_distance"][:100]
    assert np.all(exact == 0.0)
    assert all(v["near_copy_fraction"] in (1.0, None) for v in rows["copies"]["per_class"].values())


def test_nearest_train_and_radius_match_brute_force():
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (300, 6, 5, 2), dtype=np.uint8)
    fake = rng.integers(0, 256, (270, 6, 5, 2), dtype=np.uint8)  # > 1 chunk of 256
    d = np.sqrt(((fake.reshape(270, 1, -1) / 255 - train.reshape(1, 300, -1) / 255) ** 2).mean(-1))
    dist, idx = nearest_train(fake, train)
    assert np.array_equal(idx, d.argmin(1)) and np.allclose(dist, d.min(1), atol=1e-12)
    t = np.sqrt(((train.reshape(300, 1, -1) / 255 - train.reshape(1, 300, -1) / 255) ** 2).mean(-1))
    np.fill_diagonal(t, np.inf)
    assert np.allclose(train_radius(train), t.min(1), atol=1e-12)
    radius = np.array([1.0, 0.2])
    mask = near_copies(np.array([0.4, 0.4, 0.09]), np.array([0, 1, 1]), radius, 0.5)
    assert mask.tolist() == [True, False, True]


def _prdc_reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """The papers' definitions, one point at a time."""
    def dist(a, b):
        return float(np.linalg.norm(a - b))

    def radius(points, i):
        return sorted(dist(points[i], points[j]) for j in range(len(points)) if j != i)[k - 1]

    rr = [radius(real, i) for i in range(len(real))]
    rf = [radius(fake, j) for j in range(len(fake))]
    inside = [[dist(f, r) <= rr[i] for i, r in enumerate(real)] for f in fake]
    return {"precision": np.mean([any(row) for row in inside]),
            "recall": np.mean([any(dist(r, f) <= rf[j] for j, f in enumerate(fake)) for r in real]),
            "density": sum(map(sum, inside)) / (k * len(fake)),
            "coverage": np.mean([any(inside[j][i] for j in range(len(fake)))
                                 for i in range(len(real))])}


def test_precision_leaves_out_the_balls_of_outliers():
    """A far outlier among the reals has a ball wide enough to hold images unlike any real
    one; with its ball left out, they are no longer called precise (the other metrics keep
    every ball)."""
    real = torch.tensor([[float(i)] for i in range(9)] + [[30.0]])  # radius 1, the outlier 22
    fake = torch.tensor([[4.0], [15.0], [16.0], [17.0]])  # one real-like, three in no-man's land
    assert prdc(real, fake, k=1)["precision"] == 1.0
    pruned = prdc(real, fake, k=1, outliers=0.1)
    assert pruned["precision"] == 0.25
    assert {k: v for k, v in pruned.items() if k != "precision"} == {
        k: v for k, v in prdc(real, fake, k=1).items() if k != "precision"}


def test_prdc_toy_cases():
    # by hand, k = 1: every real ball has radius 1; the fake balls radius 9.5
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    assert prdc(real, fake, k=1) == {"precision": 0.5, "recall": 1.0, "density": 1.0,
                                     "coverage": 0.5}
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 3))
    fake = rng.normal(0.7, 1.3, size=(33, 3))
    ref = _prdc_reference(real, fake, k=4)
    got = prdc(torch.from_numpy(real), torch.from_numpy(fake), k=4, chunk=7)
    assert got == pytest.approx(ref)
    assert 0 < got["precision"] < 1 and 0 < got["coverage"] < 1
    with pytest.raises(ValueError, match="more than k"):
        prdc(real[:3], fake, k=3)


def test_fid_kid_deterministic_and_kid_subset_shrinks():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 8, generator=g), torch.randn(20, 8, generator=g) + 0.5
    one, two = fid_kid(a, b, 100, seed=1), fid_kid(a, b, 100, seed=1)  # subset 100 -> 20
    assert one == two and one["fid"] > 0 and one["kid"] > 0
    assert fid_kid(a, b, 10, seed=2)["kid"] != fid_kid(a, b, 10, seed=3)["kid"]
    # FID against the closed form ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2)
    from scipy.linalg import sqrtm

    x, y = a.double().numpy(), b.double().numpy()
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    ref = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert one["fid"] == pytest.approx(ref, rel=1e-6)


def test_feature_extractor_returns_the_last_linear_input(ctx, data):
    train_x = data[0][0]
    ext = FeatureExtractor(ctx.judge)
    last = [m for m in ctx.judge.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert ext.num_features == last.in_features == 128
    x = torch.from_numpy(train_x[:5]).permute(0, 3, 1, 2)
    out = ext(x)
    assert out.shape == (5, 128)
    assert torch.allclose(out, ext(x.float() / 255), atol=1e-5)  # uint8 and [0, 1] floats agree
    f = features(ext, train_x[:5], CPU, batch_size=2)
    assert f.dtype == torch.float64 and torch.allclose(f, out.double(), atol=1e-5)
    # torchmetrics takes it as is: no 3 x 299 x 299 probe, uint8 images in
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=ext)
    fid.update(torch.from_numpy(train_x[:40]).permute(0, 3, 1, 2), real=True)
    fid.update(torch.from_numpy(train_x[40:80]).permute(0, 3, 1, 2), real=False)
    assert math.isfinite(float(fid.compute()))


def test_imagenet_features_or_a_reason():
    ext, note = imagenet_extractor((1, 28, 28), CPU)
    if ext is None:
        pytest.skip(f"no EfficientNet-Lite0 weights: {note}")
    assert note.endswith(".pth") and ext.num_features == 1280
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    assert features(ext, x, CPU).shape == (3, 1280)
    assert imagenet_extractor((2, 28, 28), CPU)[0] is None


def test_gate_counts_add_up(ctx, data):
    x, y = data[1]
    copies = np.zeros(len(y), bool)
    copies[::7] = True
    keep, counts = gate(x, y, ctx.judge, CPU, 0.9, copies, NAMES)
    assert not keep[copies].any()
    assert sum(c["kept"] for c in counts.values()) == keep.sum()
    for c, name in enumerate(NAMES):
        assert sum(counts[name].values()) == (y == c).sum()
        assert counts[name]["near_copy"] == (copies & (y == c)).sum()
    assert sum(c["low_confidence"] for c in counts.values()) > 0
    everything, counts0 = gate(x, y, ctx.judge, CPU, 0.0)
    assert everything.all() and set(counts0) == set(NAMES)
    assert all(c["low_confidence"] == c["near_copy"] == 0 for c in counts0.values())


def test_cas_of_real_data_beats_noise(ctx, data):
    _, val, test = data
    real = cas(*val, test, val, NAMES, RECIPE, {}, CPU)
    noise = cas(*noise_set(20, (1, 28, 28), 10, 0), test, val, NAMES, RECIPE, {}, CPU)
    assert real["accuracy"] > 0.7 and noise["accuracy"] < 0.3
    assert set(real["per_class"]) == set(NAMES)
    assert real["accuracy"] == pytest.approx(
        np.average(list(real["per_class"].values()), weights=np.bincount(test[1], minlength=10)))


def test_noise_set_is_balanced_uint8():
    x, y = noise_set(4, (3, 8, 6), 5, seed=1)
    assert x.shape == (20, 8, 6, 3) and x.dtype == np.uint8 and np.bincount(y).tolist() == [4] * 5
    assert np.array_equal(x, noise_set(4, (3, 8, 6), 5, seed=1)[0])


def test_figures(tmp_path, rows, ctx):
    from synthaug.pipeline.figures.data import closest_pairs, quality_scatter

    r = rows["copies"]
    images = ctx.train[0][:5]
    dist, idx = nearest_train(images, ctx.train[0])
    closest_pairs(images, ctx.train[0], dist, idx, tmp_path / "pairs.png", n=16, title="t")
    table = [{**rows[k], "kind": "reference" if k != "copies" else "synthetic"} for k in rows]
    quality_scatter(table, tmp_path / "scatter.png")
    assert (tmp_path / "pairs.png").stat().st_size > 1000
    assert (tmp_path / "scatter.png").stat().st_size > 1000
    assert r["nearest_index"].dtype == np.int64


def test_ranking_check_wants_real_val_first_and_noise_last():
    from synthaug.pipeline.report.quality_page import ranking_check

    sets = {"real-val": {"fid_domain": 1.0, "recall": 0.9, "precision": 0.7, "density": 0.9},
            "gan": {"fid_domain": 5.0, "recall": 0.0, "precision": 0.8, "density": 0.5},
            "noise": {"fid_domain": 100.0, "recall": 0.0, "precision": 0.0, "density": 0.6}}
    # fidelity metrics: above real-val is named, not failed; noise not last fails
    assert ranking_check(sets) == {"fid_domain": "yes", "recall": "yes (tied)",
                                   "precision": "yes; above real-val: gan (prototypical images)",
                                   "density": "no"}
    sets["real-val"]["fid_domain"] = 6.0  # real-val not first on a distance metric: fails
    assert ranking_check(sets)["fid_domain"] == "no"


def test_prdc_is_scored_at_the_val_splits_size():
    """More fakes, more balls: recall and coverage of a set grow with its size, so sets are
    scored on a seeded subset the size of the real val split."""
    from synthaug.pipeline.quality.distribution import equal_size

    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(200, 4)))
    fake = torch.from_numpy(rng.normal(size=(2000, 4)))
    small = equal_size(fake, 100, seed=0)
    assert small.shape == (100, 4) and torch.equal(small, equal_size(fake, 100, seed=0))
    assert equal_size(fake[:50], 100, seed=0).shape == (50, 4)
    assert prdc(real, fake, k=5)["coverage"] > prdc(real, small, k=5)["coverage"]


# ---------------------------------------------------------------------- sample size
def _feature_sets(n_real=300, n_fake=400, d=16, shift=0.3):
    g = torch.Generator().manual_seed(3)
    real = torch.randn(n_real, d, generator=g).double()
    fake = (torch.randn(n_fake, d, generator=g) * 1.1 + shift).double()
    return real, fake


def test_bootstrap_intervals_cover_the_point_and_repeat_with_the_seed():
    from synthaug.pipeline.quality.distribution import bootstrap

    real, fake = _feature_sets()
    sub = equal_size(fake, 300, 0)
    point = {**fid_kid(real, fake, 100, 0), **prdc(real, sub, 5, outliers=0.5)}
    point.pop("kid_std")
    ci = bootstrap(real, fake, sub, point, 5, 0.5, seed=0)
    assert set(ci) == set(point)
    for k, (lo, hi) in ci.items():
        assert lo <= point[k] <= hi and lo < hi, k
    assert ci == bootstrap(real, fake, sub, point, 5, 0.5, seed=0)  # seeded: the same
    assert ci != bootstrap(real, fake, sub, point, 5, 0.5, seed=1)
    # a smaller reference, a wider FID interval
    small = bootstrap(real[:60], fake, sub, {"fid": fid_kid(real[:60], fake, 50, 0)["fid"]},
                      5, 0.5, seed=0)
    assert small["fid"][1] - small["fid"][0] > ci["fid"][1] - ci["fid"][0]


def test_bootstrap_draws_are_the_metrics_of_the_resampled_sets():
    """Each FID draw is torchmetrics' FID of the resampled sets; PRDC with every count 1 is
    prdc itself (the radii of a resample leave copies of an image out)."""
    from synthaug.pipeline.quality.distribution import _counts, _fid_draws, _prdc_draws

    real, fake = _feature_sets(200, 250)
    rng = np.random.default_rng(0)
    wr, wf = _counts(rng, 200, 2), _counts(rng, 250, 2)
    draws = _fid_draws(real, fake, wr, wf)
    for b in range(2):
        r, f = real[np.repeat(np.arange(200), wr[b])], fake[np.repeat(np.arange(250), wf[b])]
        assert draws[b] == pytest.approx(fid_kid(r, f, 100, 0)["fid"], rel=1e-4)
    ones = _prdc_draws(real, fake, np.ones((1, 200), int), np.ones((1, 250), int), 5, 0.5)
    assert {k: float(v[0]) for k, v in ones.items()} == pytest.approx(prdc(real, fake, 5, outliers=0.5))


def test_min_reference_and_the_rows_intervals(rows, ctx):
    from synthaug.pipeline.quality.distribution import min_reference

    assert min_reference(128) == 256 and min_reference(16) == 200
    for r in rows.values():
        assert r["reference_images"] == len(ctx.train_feats)
        assert r["min_reference"] == min_reference(ctx.train_feats.shape[1])
        for k in ("fid_domain", "kid_domain", "precision", "recall", "density", "coverage"):
            lo, hi = r["ci"][k]
            assert lo <= r[k] <= hi, (r["name"], k)


def test_ranking_check_is_judged_within_the_intervals():
    from synthaug.pipeline.report.quality_page import ranking_check, summary

    sets = {"real-val": {"fid_domain": 10.0, "ci": {"fid_domain": [6.0, 15.0]}},
            "gan": {"fid_domain": 6.7, "ci": {"fid_domain": [4.0, 9.0]}},
            "noise": {"fid_domain": 100.0, "ci": {"fid_domain": [90.0, 110.0]}}}
    # gan beats real-val only within the intervals: named, not failed
    assert ranking_check(sets) == {"fid_domain": "within the intervals: above real-val: gan"}
    sets["gan"]["ci"]["fid_domain"] = [4.0, 5.5]  # beyond them: the check fails
    assert ranking_check(sets) == {"fid_domain": "no"}
    # a small reference: the distance metrics are reported as unreliable
    for m in sets.values():
        m.update(reference_images=34, min_reference=256)
    assert ranking_check(sets)["fid_domain"] == "no; unreliable (reference of 34 < 256 images)"
    text = "\n".join(summary(sets))
    assert "**Unreliable distance metrics:** the real reference holds 34 images" in text
    assert "10.00 [6.00, 15.00]" in text and "95% bootstrap intervals" in text


def test_a_tiny_validation_split_leaves_prdc_unmeasured_with_a_note(ctx, data):
    """A user's folder may leave fewer val images than quality.k + 1: precision/recall/
    density/coverage are then not measured (None, and a note says why), not a crash; the
    distances and their intervals are still given where they can be."""
    import dataclasses

    train, val, test = data
    tiny = dataclasses.replace(ctx, val=(val[0][:3], val[1][:3]))
    row = assess("tiny", train[0][:20], train[1][:20], tiny)
    assert all(row[k] is None for k in ("precision", "recall", "density", "coverage"))
    assert "quality.k=3" in row["prdc_note"]
    assert row["fid_domain"] is not None and "precision" not in row["ci"]
