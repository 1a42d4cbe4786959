"""Layer specs -> torch: the course notes' Keras tables, padding arithmetic, built-ins, CLI."""
from __future__ import annotations

import re

import pytest
import torch
from typer.testing import CliRunner

from synthaug.pipeline.classifiers.architectures import (BUILTIN, Act, BatchNorm, Conv, Dense, Dropout, Flatten,
                                    GlobalAvgPool, Pool, Residual)
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.classifiers.layers import build_model, count_params, resolve_layers, summary
from synthaug.pipeline.classifiers.shapes import out_size, same_pad
from synthaug.stages.models import app

# seeds/001, "Ejemplo 1": Conv2D(16, 3x3, strides 2, same) on 128x128x1 ... Dense(26)
SEED_1 = [Conv(filters=16, kernel=3, stride=2, padding="same"), Act(fn="relu"),
          Pool(type="maxpool", size=2, stride=2), Flatten(), Dense(units=512), Act(fn="relu"),
          Dense(units=26)]
# seeds/001, "Número de Parámetros": 3x3 convs (the notes' "24x24" is a typo: 36,928 =
# (3*3*64)*64 + 64), total 80,266; Keras' final softmax Activation row is left out (0 params,
# and our models return logits)
SEED_2 = [Conv(filters=64, kernel=3, activation="relu"), Pool(type="maxpool", size=2),
          Conv(filters=64, kernel=3, activation="relu"), Pool(type="maxpool", size=2),
          Conv(filters=64, kernel=3, activation="relu"), Flatten(), Dropout(rate=0.5),
          Dense(units=10)]


def rows(table: str) -> dict[str, tuple[str, int]]:
    """layer name -> (output shape, params) parsed back from a summary table."""
    out = {}
    for line in table.splitlines():
        m = re.match(r"^(\w+) \((\w+)\)\s+(\(None[\d, ]*\))\s+([\d,]+)$", line)
        if m:
            out[m[1]] = (m[3], int(m[4].replace(",", "")))
    return out


def test_seed_example_1_matches_keras_table():
    table = summary(SEED_1, (1, 128, 128), 26, name="seed")
    r = rows(table)
    assert list(r) == ["conv2d_1", "activation_1", "max_pooling2d_1", "flatten_1", "dense_1",
                       "activation_2", "dense_2"]  # 26 classes: no head appended
    assert r["conv2d_1"] == ("(None, 64, 64, 16)", 160)
    assert r["max_pooling2d_1"] == ("(None, 32, 32, 16)", 0)
    assert r["flatten_1"] == ("(None, 16384)", 0)
    assert r["dense_1"] == ("(None, 512)", 8_389_120)
    assert r["dense_2"] == ("(None, 26)", 13_338)
    assert "8,389,120" in table and "Total params: 8,402,618" in table
    assert "Non-trainable params: 0" in table and "head" not in table
    assert count_params(build_model(SEED_1, (1, 128, 128), 26)) == (8_402_618, 8_402_618)


def test_seed_example_2_total_80266():
    r = rows(summary(SEED_2, (1, 28, 28), 10))
    assert [v for v in r.values()] == [
        ("(None, 26, 26, 64)", 640), ("(None, 13, 13, 64)", 0), ("(None, 11, 11, 64)", 36_928),
        ("(None, 5, 5, 64)", 0), ("(None, 3, 3, 64)", 36_928), ("(None, 576)", 0),
        ("(None, 576)", 0), ("(None, 10)", 5_770)]
    assert count_params(build_model(SEED_2, (1, 28, 28), 10))[0] == 80_266


@pytest.mark.parametrize("shape", [(1, 32, 32), (1, 28, 28)])
def test_lenet5_is_classic_61706(shape):
    model = build_model(BUILTIN["lenet5"](shape), shape, 10)
    assert count_params(model) == (61_706, 61_706)
    r = rows(summary(BUILTIN["lenet5"](shape), shape, 10))
    assert r["conv2d_1"][0] == "(None, 28, 28, 6)"  # 28x28 digits are padded to LeNet's 32
    assert r["flatten_1"] == ("(None, 400)", 0)


@pytest.mark.parametrize("n,k,s,p,d,expected", [
    (28, 3, 1, 0, 1, 26), (32, 5, 1, 0, 1, 28), (28, 5, 1, 2, 1, 28), (7, 3, 2, 0, 1, 3),
    (128, 3, 2, 1, 1, 64), (28, 3, 1, 0, 2, 24), (10, 3, 3, 0, 1, 3), (9, 3, 1, 2, 3, 7)])
def test_output_size_formula(n, k, s, p, d, expected):
    assert out_size(n, k, s, p, d) == expected
    if d == 1:  # the notes' floor((n - f + 2p) / s) + 1
        assert out_size(n, k, s, p, d) == (n - k + 2 * p) // s + 1
    layer = Conv(filters=2, kernel=k, stride=s, padding=p, dilation=d)
    y = build_model([layer, Flatten()], (1, n, n), 3)[0](torch.zeros(1, 1, n, n))
    assert y.shape[-2:] == (expected, expected)


@pytest.mark.parametrize("n,k,s,expected", [(7, 3, 2, 4), (7, 2, 2, 4), (8, 3, 2, 4),
                                            (5, 1, 2, 3), (9, 4, 3, 3), (6, 3, 1, 6)])
def test_same_padding_is_ceil_n_over_stride(n, k, s, expected):
    for layer in (Conv(filters=2, kernel=k, stride=s, padding="same"),
                  Pool(type="maxpool", size=k, stride=s, padding="same"),
                  Pool(type="avgpool", size=k, stride=s, padding="same")):
        y = build_model([layer, Flatten()], (1, n, n), 3)[0](torch.randn(1, 1, n, n))
        assert y.shape[-2:] == (expected, expected), layer


def test_same_padding_puts_odd_pixel_bottom_right():
    assert same_pad(7, 2, 2) == (0, 1) and same_pad(7, 3, 2) == (1, 1)
    assert same_pad(8, 3, 2) == (0, 1) and same_pad(6, 4, 1) == (1, 2)
    x = torch.arange(1.0, 50.0).view(1, 1, 7, 7)
    mx = build_model([Pool(type="maxpool", size=2, padding="same"), Flatten()], (1, 7, 7), 3)[0]
    av = build_model([Pool(type="avgpool", size=2, padding="same"), Flatten()], (1, 7, 7), 3)[0]
    # last window holds row 6 plus one padded row: max ignores -inf pads, the mean excludes them
    assert mx(-x)[0, 0, 3, 3] == -49  # a zero pad would have won the max
    assert av(x)[0, 0, 3, 3] == 49 and av(x)[0, 0, 3, 0] == (43 + 44) / 2
    assert av(x)[0, 0, 0, 0] == (1 + 2 + 8 + 9) / 4


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtins_give_logits(name, shape):
    torch.manual_seed(0)
    model = build_model(resolve_layers(name, {}, shape), shape, 7).eval()
    with torch.no_grad():
        y = model(torch.rand(3, *shape))
    assert y.shape == (3, 7) and torch.isfinite(y).all()
    assert not isinstance(model[-1], torch.nn.LazyLinear)


def test_models_are_reproducible_from_spec():
    layers = BUILTIN["resnet_small"]((3, 32, 32))
    a = build_model(layers, (3, 32, 32), 10)
    b = build_model([l.model_dump() for l in layers], (3, 32, 32), 10)  # dicts, as in config.json
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(a.state_dict()[k].shape == v.shape for k, v in b.state_dict().items())


@pytest.mark.parametrize("bf16", [False, True])
def test_relu_after_pool_is_bit_exact(bf16):
    """build_model runs a conv's ReLU after its max pool: same outputs and gradients, bit for bit,
    as ReLU-then-pool (the spec's order), in float32 and under CPU bf16 autocast."""
    from torch import nn

    from synthaug.pipeline.classifiers.layers import _walk, with_head

    cnn = BUILTIN["cnn"]((1, 28, 28))
    padded = [Conv(filters=8, kernel=3, padding="same", activation="relu"),
              Pool(type="maxpool", size=2, padding="same")]  # 3x3 -> 2x2, -inf padded
    layers = cnn[:6] + padded + cnn[6:]
    torch.manual_seed(0)
    fast = build_model(layers, (1, 28, 28), 10).train()
    spec_order = nn.Sequential(*_walk(with_head(layers, 10), (1, 28, 28))).train()
    spec_order.load_state_dict(fast.state_dict())
    moved = [m for m in fast if getattr(m, "act", None) is not None and hasattr(m, "pads")]
    assert len(moved) == 4  # every conv + max pool pair
    x = torch.randn(16, 1, 28, 28)
    grads = []
    for model in (fast, spec_order):
        torch.manual_seed(1)  # the same dropout mask
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        out.float().square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))


def test_residual_shortcut_projection_only_when_needed():
    model = build_model([Residual(filters=8), Residual(filters=8), Residual(filters=8, stride=2),
                         GlobalAvgPool()], (8, 16, 16), 4)
    assert isinstance(model[0].shortcut, torch.nn.Identity)
    assert isinstance(model[1].shortcut, torch.nn.Identity)
    assert isinstance(model[2].shortcut[0], torch.nn.Conv2d)
    assert model[2].shortcut[0].stride == (2, 2)
    # 2 convs 3x3 (no bias) + 2 BN per block; the projection adds 1x1 conv + BN
    assert count_params(model[0])[0] == 2 * 8 * 8 * 9 + 2 * 16
    assert count_params(model[2])[0] == 2 * 8 * 8 * 9 + 2 * 16 + 8 * 8 + 16
    widen = build_model([Residual(filters=12), GlobalAvgPool()], (8, 5, 5), 4)  # stride 1
    assert isinstance(widen[0].shortcut[0], torch.nn.Conv2d)
    assert widen(torch.randn(2, 8, 5, 5)).shape == (2, 4)


def test_batchnorm_stats_are_buffers_and_noted():
    layers = [Conv(filters=4, bias=False), BatchNorm(), Flatten(), Dense(units=5), BatchNorm()]
    model = build_model(layers, (1, 6, 6), 3)
    assert count_params(model[1]) == (8, 8)
    assert isinstance(model[4], torch.nn.BatchNorm1d)
    table = summary(layers, (1, 6, 6), 3)
    assert "running mean/var (18 values) are buffers" in table


def test_too_small_input_is_a_helpful_error():
    with pytest.raises(SynthaugError) as e:
        build_model(BUILTIN["cnn"]((1, 4, 4)), (1, 4, 4), 10, name="cnn")
    msg = str(e.value)
    assert "layer 6 of 10 (maxpool 2x2) gets a 1x1 input" in msg
    assert "1x4x4 is too small for cnn" in msg and "prepare.size >= 8" in msg
    build_model(BUILTIN["cnn"]((1, 8, 8)), (1, 8, 8), 10)  # the suggested size does work
    with pytest.raises(SynthaugError, match=r"layer 1 of 3 \(conv 5x5\) gets a 3x3 input"):
        build_model([Conv(filters=2, kernel=5), Flatten()], (1, 3, 3), 2)


def test_dense_on_maps_needs_flatten():
    with pytest.raises(SynthaugError, match=r"layer 2 of 3 \(dense 8\).*add a flatten"):
        build_model([Conv(filters=2), Dense(units=8)], (1, 8, 8), 3)
    with pytest.raises(SynthaugError, match=r"layer 2 of 2 \(dense 3\).*add a flatten"):
        build_model([Conv(filters=2)], (1, 8, 8), 3)  # the automatic head, too
    with pytest.raises(SynthaugError, match=r"conv 3x3\) needs image maps"):
        build_model([Flatten(), Conv(filters=2)], (1, 8, 8), 3)


def test_head_rule():
    base = [Flatten(), Dense(units=16, activation="relu")]
    assert len(build_model(base, (1, 4, 4), 10)) == 3  # head appended
    assert len(build_model(base, (1, 4, 4), 16)) == 2  # last Dense already has num_classes
    head = build_model(base + [Dense(units=5)], (1, 4, 4), 10)
    assert len(head) == 4 and head[-1].linear.out_features == 10 and head[-1].act is None
    assert "automatic Dense(10) head" in summary(base, (1, 4, 4), 10)


def test_resolve_layers():
    custom = {"tiny": [Flatten(), Dense(units=4)]}
    assert resolve_layers("tiny", custom, (1, 8, 8)) == custom["tiny"]
    assert resolve_layers("lenet5", custom, (1, 28, 28))[0].padding == 2
    with pytest.raises(SynthaugError, match="allowed: cnn, lenet5, resnet_small, efficientnet_lite0, resnet18, mobilenet_v3_small, tiny"):
        resolve_layers("vgg", custom, (1, 8, 8))


runner = CliRunner()


def test_cli_summary_custom_model(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("models:\n  seed:\n"
                      "    - {type: conv, filters: 16, kernel: 3, stride: 2, padding: same}\n"
                      "    - {type: activation, fn: relu}\n"
                      "    - {type: maxpool, size: 2}\n    - {type: flatten}\n"
                      "    - {type: dense, units: 512}\n    - {type: activation, fn: relu}\n"
                      "    - {type: dense, units: 26}\n")
    res = runner.invoke(app, ["summary", "seed", "--input-shape", "1,128,128", "--classes", "26",
                              "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert "8,389,120" in res.output and "Total params: 8,402,618" in res.output


def test_cli_builtin_without_params_and_list(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    res = runner.invoke(app, ["summary", "cnn", "-i", "3,32,32", "-p", missing])
    assert res.exit_code == 0 and "(None, 32, 32, 32)" in res.output and "Total params" in res.output
    res = runner.invoke(app, ["list", "-p", missing, "-S", "models.tiny=[{type: flatten}]"])
    assert res.exit_code == 0
    assert re.search(r"lenet5\s+built-in\s+61,706 params", res.output)
    assert re.search(r"tiny\s+custom\s+7,850 params", res.output)  # 784*10 + 10


@pytest.mark.parametrize("bad", ["28,28", "1,28,x", "0,28,28", "1,28,28,3"])
def test_cli_bad_input_shape_is_one_line_exit_2(tmp_path, bad):
    res = runner.invoke(app, ["summary", "cnn", "--input-shape", bad,
                              "-p", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2
    out = res.output.strip()
    assert len(out.splitlines()) == 1 and "--input-shape" in out and "C,H,W" in out


def test_cli_unknown_model_and_too_small(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    res = runner.invoke(app, ["summary", "vgg", "-p", missing])
    assert res.exit_code == 2 and "unknown model 'vgg'" in res.output
    res = runner.invoke(app, ["summary", "cnn", "-i", "1,4,4", "-p", missing])
    assert res.exit_code == 2 and "too small for cnn" in res.output
