"""Recipes of use (issue 18 item 4): how a variant's synthetic images enter training."""
import numpy as np
import pytest
import torch

from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.classifiers.trainer import fit_variant
from synthaug.pipeline.classifiers.training import fit
from synthaug.pipeline.classifiers.use import Use
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.compose import compose_variant
from synthaug.pipeline.data.config import ComposeConfig, UseConfig, VariantConfig
from synthaug.pipeline.data.storage import PackedDataset

NAMES = ["a", "b", "c"]


def parts(n=6, size=8, seed=0, parented=True):
    """A real split of n per class and a synthetic set of 2n per class whose images name a
    parent (an index into the real split, of their own class) when `parented`."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n)
    real = PackedDataset(rng.integers(0, 256, (len(labels), size, size, 1), dtype=np.uint8),
                         labels, NAMES, {"kind": "split"})
    syn_labels = np.repeat(np.arange(3), 2 * n)
    rows = [{"generator": "vae", **({"parent": int(rng.choice(np.flatnonzero(labels == c)))}
                                    if parented else {})} for c in syn_labels]
    syn = PackedDataset(rng.integers(0, 256, (len(syn_labels), size, size, 1), dtype=np.uint8),
                        syn_labels, NAMES, {"kind": "synthetic"}, rows)
    return {"real": real, "jitter": syn}


def variant(use: UseConfig, **kw):
    cfg = VariantConfig(parts=["real", "jitter"], ratio=1.0, use=use, **kw)
    return compose_variant("v", cfg, parts(**{k: v for k, v in kw.items() if k == "parented"}))


def test_plain_variants_carry_no_recipe_and_recipes_travel_in_meta():
    plain = compose_variant("v", VariantConfig(parts=["real", "jitter"], ratio=1.0), parts())
    assert "use" not in plain.meta and Use.of(plain.meta, plain.provenance) is None
    v = variant(UseConfig(synthetic_weight=0.25, replace_p=0.5))
    use = Use.of(v.meta, v.provenance)
    assert use.synthetic_weight == 0.25 and use.replace_p == 0.5
    assert use.synthetic.tolist() == [False] * 18 + [True] * 18
    # every synthetic image points at a real image of its own class in the variant
    kids = np.flatnonzero(use.parent >= 0)
    assert len(kids) == 18 and (use.parent[kids] < 18).all()
    assert (v.labels[use.parent[kids]] == v.labels[kids]).all()
    # under replace_p the stream draws real images only; children come in by swapping
    assert use.base().tolist() == list(range(18))


def test_replace_needs_parents_and_the_params_name_the_field():
    with pytest.raises(SynthaugError, match=r"compose.variants.v.use.replace_p: .*posterior_jitter"):
        compose_variant("v", VariantConfig(parts=["real", "jitter"], ratio=1.0,
                                           use=UseConfig(replace_p=0.5)), parts(parented=False))
    with pytest.raises(ValueError, match="replace_p"):
        ComposeConfig.model_validate({"variants": {"v": {"parts": ["real"], "use": {"replace_p": 2}}}})


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_replacement_swaps_a_real_image_for_one_of_its_own_variants(p):
    v = variant(UseConfig(replace_p=max(p, 1e-9)))
    use = Use.of(v.meta, v.provenance)
    use.replace_p = p
    g = torch.Generator().manual_seed(0)
    order = torch.as_tensor(np.tile(use.base(), 200))
    replace = use.replacer(g)
    out = order if replace is None else replace(order)
    has_kids = np.isin(order.numpy(), use.parent[use.parent >= 0])
    swapped = out.numpy() != order.numpy()
    # a swap lands on a child of the image it replaces; images without children stay
    assert (use.parent[out.numpy()[swapped]] == order.numpy()[swapped]).all()
    assert not swapped[~has_kids].any()
    assert abs(swapped[has_kids].mean() - p) < 0.05
    if p == 1.0:  # every child of a parent gets drawn, not always the same one
        kids = {int(k) for k in out.numpy()[swapped]}
        assert kids == set(np.flatnonzero(use.parent >= 0).tolist()) & \
            set(np.flatnonzero(np.isin(use.parent, order.numpy())).tolist())


def _train(v, use, seed=0, **cfg):
    from synthaug.pipeline.classifiers.classifier import build_classifier
    from synthaug.pipeline.core.device import seed_everything

    g = seed_everything(seed)
    c = TrainConfig(model="lenet5", epochs=2, epoch_size=64, batch_size=16, patience=0, **cfg)
    model, _ = build_classifier("lenet5", {}, (1, 8, 8), NAMES, v.images, c)
    val = (v.images[:9], v.labels[:9])
    r = fit_variant(model, (v.images, v.labels), val, c, torch.device("cpu"), g, use,
                    progress=False)
    return model, r


def test_a_synthetic_weight_of_zero_makes_the_synthetic_labels_irrelevant():
    v = variant(UseConfig(synthetic_weight=0.0))
    use = Use.of(v.meta, v.provenance)
    flipped = v.labels.copy()
    flipped[use.synthetic] = (flipped[use.synthetic] + 1) % 3
    w = {k: t.clone() for k, t in _train(v, use)[0].state_dict().items()}
    v.labels = flipped
    same = _train(v, use)[0].state_dict()
    assert all(torch.equal(w[k], same[k]) for k in w)
    use.synthetic_weight = 0.5  # now they count, and the weights differ
    other = _train(v, use)[0].state_dict()
    assert not all(torch.equal(w[k], other[k]) for k in w)


def test_pretrain_finetune_fine_tunes_on_the_real_images_alone():
    v = variant(UseConfig(schedule="pretrain_finetune", finetune_epochs=2))
    use = Use.of(v.meta, v.provenance)
    seen = []
    orig = fit_variant.__globals__["fit"]

    def spy(model, train, val, cfg, device, generator, use=None, **kw):
        seen.append((cfg.epochs, cfg.lr, None if use is None else use.base().tolist()))
        return orig(model, train, val, cfg, device, generator, use=use, **kw)

    fit_variant.__globals__["fit"] = spy
    try:
        _, r = _train(v, use)
    finally:
        fit_variant.__globals__["fit"] = orig
    assert [s[0] for s in seen] == [2, 2] and seen[1][1] == pytest.approx(seen[0][1] * 0.3)
    assert seen[1][2] == use.real_only().tolist() == list(range(18))
    assert r.epochs_run == 4 and 3 <= r.best_epoch <= 4
    assert [row.get("phase") for row in r.history] == [None, None, "finetune", "finetune"]
    assert [row["epoch"] for row in r.history] == [1, 2, 3, 4]
