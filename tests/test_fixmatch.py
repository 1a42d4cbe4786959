"""FixMatch, the labelled-few / unlabelled-many control (pipeline/classifiers/semi.py): its
masked consistency loss, its place in the one training loop, and the when point that hands it
the rest of the train pool without labels."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synthaug.pipeline.augment.config import AugmentConfig
from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.classifiers.semi import FixMatch
from synthaug.pipeline.classifiers.trainer import fit_variant
from synthaug.pipeline.classifiers.use import Use
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.config import ComposeConfig, FixMatchConfig, UseConfig, VariantConfig
from synthaug.pipeline.data.prepare import held_out
from synthaug.pipeline.experiments.sweep import Point, SweepData, split_of, when_set
from synthaug.stages.params import validate_params

from tests.test_when import NAMES, pool  # a 3-class train pool of random 8 x 8 images


def fixmatch(n=20, **cfg) -> FixMatch:
    images = np.zeros((n, 8, 8, 1), np.uint8)
    return FixMatch(images, FixMatchConfig(**cfg), torch.device("cpu"), torch.Generator().manual_seed(0))


def test_the_consistency_loss_counts_only_confident_pseudo_labels():
    fm = fixmatch(tau=0.9, lambda_u=2.0)
    # weak views: image 0 confident in class 2 (p > 0.9), image 1 unsure; strong views: any
    weak = torch.tensor([[0.0, 0.0, 6.0], [1.0, 1.1, 0.9]])
    strong = torch.tensor([[1.0, 2.0, 0.5], [3.0, 0.0, 0.0]], requires_grad=True)
    loss = fm.loss(torch.cat([weak, strong]))
    # the mean over BOTH unlabelled images, the unsure one counting 0, times lambda_u
    expected = 2.0 * F.cross_entropy(strong[:1], torch.tensor([2])).item() / 2
    assert loss.item() == pytest.approx(expected)
    assert fm.stats() == {"unlabelled_kept": 0.5} and fm.stats() == {"unlabelled_kept": 0.0}
    loss.backward()
    assert strong.grad[1].abs().sum() == 0 and strong.grad[0].abs().sum() > 0


def test_pseudo_labels_carry_no_gradient():
    fm = fixmatch(tau=0.0)
    logits_u = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
                            requires_grad=True)
    fm.loss(logits_u).backward()
    assert logits_u.grad[:2].abs().sum() == 0  # the weak half: targets only
    assert logits_u.grad[2:].abs().sum() > 0


def test_one_forward_pass_holds_labelled_weak_and_strong_views():
    fm = fixmatch(n=50, mu=3)
    calls = []

    def net(x):
        calls.append(tuple(x.shape))
        return torch.zeros(len(x), 3)

    xb = torch.rand(4, 1, 8, 8)
    logits, logits_u = fm.forward(net, xb, batch_size=4, channels_last=False)
    assert calls == [(4 + 2 * 3 * 4, 1, 8, 8)]  # BatchNorm sees all three views together
    assert logits.shape == (4, 3) and logits_u.shape == (24, 3)


def _use(unlabelled, **cfg):
    n = 30
    return Use(np.zeros(n, bool), np.full(n, -1), semi_supervised="fixmatch",
               fixmatch=FixMatchConfig(**cfg).model_dump(), unlabelled=unlabelled,
               where="compose.variants.fixmatch")


def test_fit_trains_on_the_unlabelled_images_and_records_the_kept_share():
    from synthaug.pipeline.classifiers.classifier import build_classifier

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    x = rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8)
    x[np.arange(30), y * 2, :, 0] = 255  # a class's row lights up: learnable
    un = rng.integers(0, 256, (60, 8, 8, 1), dtype=np.uint8)
    cfg = TrainConfig(model="cnn", epochs=1, batch_size=8, epoch_size=16, patience=0,
                      channels_last=False, cpu_bf16=False)
    torch.manual_seed(0)
    model, _ = build_classifier("cnn", {}, (1, 8, 8), NAMES, x, cfg)
    r = fit_variant(model, (x, y), (x, y), cfg, torch.device("cpu"),
                    torch.Generator().manual_seed(0), _use(un, tau=0.0, mu=2, epochs=2))
    assert r.epochs_run == 2  # fixmatch.epochs replaces the recipe's
    assert all(row["unlabelled_kept"] == 1.0 for row in r.history)  # tau 0 keeps every one
    assert all(math.isfinite(row["train_loss"]) for row in r.history)
    with pytest.raises(SynthaugError, match="compose.variants.fixmatch: use.semi_supervised "
                                            "needs unlabelled images"):
        fit_variant(model, (x, y), (x, y), cfg, torch.device("cpu"),
                    torch.Generator().manual_seed(0), _use(None))


def test_a_fixmatch_when_point_gets_the_pool_beyond_the_split_without_labels():
    p = pool()
    data = SweepData(real=split_of(p, 4), val=split_of(p, 1), test=split_of(p, 1), pool=p,
                     synthetic={})
    compose = ComposeConfig(variants={"fixmatch": VariantConfig(
        use=UseConfig(semi_supervised="fixmatch"))})
    x, y, name, use, online = when_set(Point("when", 2, 0, "fixmatch"), data, compose,
                                       AugmentConfig(), None, None)
    assert len(y) == 6 and np.array_equal(x, split_of(p, 2).images)  # labelled: the k split
    rest = held_out(p, 2, 3)
    assert np.array_equal(use.unlabelled, rest.images) and len(use.unlabelled) == 36 - 6
    assert use.semi_config() == FixMatchConfig()


def test_fixmatch_is_a_when_variant_only_and_its_settings_are_checked():
    with pytest.raises(Exception, match="for the sweep's when points"):
        validate_params({"study": {"variants": ["real", "fixmatch"]}})
    with pytest.raises(Exception, match="tau"):
        validate_params({"compose": {"variants": {"fm": {
            "use": {"semi_supervised": "fixmatch", "fixmatch": {"tau": 1.5}}}}}})
    with pytest.raises(Exception, match="extra|not permitted"):
        FixMatchConfig(threshold=0.9)
    p = validate_params({"sweep": {"when_variants": ["fixmatch"]}})
    assert p.compose.variants["fixmatch"].use.semi_supervised == "fixmatch"


def test_the_when_report_compares_the_open_set_arms_with_the_fixmatch_control():
    from synthaug.pipeline.report import when

    def line(accs):
        return {10: dict(enumerate(accs))}

    by_line = {"real": line([.80, .82, .81, .79, .83]),
               "real+classic": line([.84, .85, .85, .83, .86]),
               "fixmatch": line([.90, .92, .91, .90, .93]),
               "real+vae-unlabelled": line([.89, .90, .91, .88, .92]),
               "more-real": line([.92, .93, .93, .91, .94])}
    cmp = when.compare(by_line)
    fm = cmp["fixmatch"][10]["vs_classic"]
    assert fm["diff"] == pytest.approx(0.066) and fm["significant"] and fm["n"] == 5
    arm = cmp["real+vae-unlabelled"][10]["vs_fixmatch"]
    assert arm["diff"] == pytest.approx(-0.012) and arm["low"] < arm["diff"] < arm["high"]
    assert "vs_fixmatch" not in cmp["real"][10] and "vs_classic" not in cmp["real+classic"][10]
    text = when.open_set(cmp)
    assert text.startswith("at 10 per class `fixmatch` beats `real+classic` (+6.6")
    assert "`real+vae-unlabelled` (-1.2" in text and "no arm adds beyond" in text
    assert "; vs `fixmatch` -1.2" in when.table(cmp) and "; vs `real+classic` +6.6" in when.table(cmp)
    # a control that does not clear classic augmentation is said to be no competent control
    by_line["fixmatch"] = line([.84, .86, .84, .84, .85])
    assert "does not beat `real+classic`" in when.open_set(when.compare(by_line))
    del by_line["fixmatch"]
    assert when.open_set(when.compare(by_line)) == ""


def test_the_sweep_queues_fixmatch_points_before_plain_ones():
    from synthaug.pipeline.experiments.sweep_run import groups

    compose = ComposeConfig()
    todo = {"cnn": [Point("when", 10, 0, "real+classic"), Point("when", 10, 0, "fixmatch"),
                    Point("real_per_class", 10, 0)]}
    jobs = groups(todo, compose)
    assert [pts[0].variant for _, pts in jobs] == ["fixmatch", "real+classic", ""]
