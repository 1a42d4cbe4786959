"""The torch modules a layer list is built from (pipeline.classifiers.layers), and their shape
arithmetic. Shapes are computed from the spec, so every parameter exists right after
construction (no lazy modules).

Keras-compatible where Keras has a rule:
- Padding: "valid" = none, an int = that many pixels on every side, "same" = TensorFlow's rule:
  output ceil(n / stride), total padding max((out - 1) * s + (k - 1) * d + 1 - n, 0), the odd
  pixel going to the bottom/right. Done with F.pad, so it also works for stride > 1 (PyTorch's
  own padding="same" does not). Output size otherwise floor((n + 2p - d(k - 1) - 1) / s) + 1.
- Pool padding: max pools pad with -inf; average pools exclude padded pixels from the mean
  (TensorFlow's behaviour for "same"; we use it for int padding as well).
- GlobalAvgPool returns (N, C) like Keras' GlobalAveragePooling2D; a flatten after it is a no-op.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from synthaug.pipeline.classifiers.architectures import Conv, Dense, Pool, Residual
from synthaug.pipeline.core.errors import SynthaugError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
               "leaky_relu": lambda: nn.LeakyReLU(0.01), "elu": nn.ELU, "silu": nn.SiLU}


# ---------------------------------------------------------------- shape arithmetic
def pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def out_size(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """floor((n + 2p - d(k - 1) - 1) / s) + 1; with d = 1 the notes' floor((n - f + 2p) / s) + 1."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def same_pad(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) for one dimension."""
    total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _pads(padding, hw, k, s, d) -> tuple[int, int, int, int]:
    """F.pad order (left, right, top, bottom)."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        return same_pad(hw[1], k[1], s[1], d[1]) + same_pad(hw[0], k[0], s[0], d[0])
    return (padding,) * 4


class TooSmall(Exception):
    def __init__(self, hw):
        self.hw = hw


def _window(hw, k, s, d, pads) -> tuple[int, int]:
    h = out_size(hw[0] + pads[2] + pads[3], k[0], s[0], 0, d[0])
    w = out_size(hw[1] + pads[0] + pads[1], k[1], s[1], 0, d[1])
    if h < 1 or w < 1:
        raise TooSmall(hw)
    return h, w


# ---------------------------------------------------------------- modules
class ConvLayer(nn.Module):
    """Optional asymmetric zero padding, Conv2d, optional activation: one Keras Conv2D row."""

    def __init__(self, spec: Conv, shape):
        super().__init__()
        k, s, d = pair(spec.kernel), pair(spec.stride), pair(spec.dilation)
        pads = _pads(spec.padding, shape[1:], k, s, d)
        self.out_hw = _window(shape[1:], k, s, d, pads)
        symmetric = len(set(pads)) == 1
        # symmetric padding goes into the conv itself (faster); only TF-"same" odd cases need F.pad
        self.pad = None if symmetric else pads
        self.conv = nn.Conv2d(shape[0], spec.filters, k, s, pads[0] if symmetric else 0, d,
                              bias=spec.bias)
        self.act = ACTIVATIONS[spec.activation]() if spec.activation else None

    def forward(self, x):
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.conv(x)
        return self.act(x) if self.act is not None else x


class PoolLayer(nn.Module):
    """Max/avg pooling with Keras padding: -inf pads for max, pads excluded from the mean for avg."""

    def __init__(self, spec: Pool, shape):
        super().__init__()
        self.k = pair(spec.size)
        self.s = pair(spec.stride if spec.stride is not None else spec.size)
        self.max = spec.type == "maxpool"
        self.pads = _pads(spec.padding, shape[1:], self.k, self.s, (1, 1))
        if isinstance(spec.padding, int) and spec.padding >= min(self.k):
            raise SynthaugError(f"{spec.type}: padding {spec.padding} must be smaller than the "
                                f"pool size {min(self.k)} (a window would see only padding)")
        self.out_hw = _window(shape[1:], self.k, self.s, (1, 1), self.pads)
        self.act = None  # the previous conv's ReLU, moved here by _relu_after_pool

    def forward(self, x):
        if self.max:
            if any(self.pads):
                x = F.pad(x, self.pads, value=float("-inf"))
            x = F.max_pool2d(x, self.k, self.s)
            return self.act(x) if self.act is not None else x
        if not any(self.pads):
            return F.avg_pool2d(x, self.k, self.s)
        # mean over real pixels only: pooled sum of x divided by pooled count of real pixels
        ones = torch.ones_like(x[:1, :1])
        return (F.avg_pool2d(F.pad(x, self.pads), self.k, self.s)
                / F.avg_pool2d(F.pad(ones, self.pads), self.k, self.s))


class GlobalAvgPoolLayer(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class DenseLayer(nn.Module):
    def __init__(self, spec: Dense, features: int):
        super().__init__()
        self.linear = nn.Linear(features, spec.units)
        self.act = ACTIVATIONS[spec.activation]() if spec.activation else None

    def forward(self, x):
        x = self.linear(x)
        return self.act(x) if self.act is not None else x


class ResidualBlock(nn.Module):
    """ResNet basic block; 1x1 conv + BN shortcut when the stride or channel count changes."""

    def __init__(self, spec: Residual, shape):
        super().__init__()
        c, f, s = shape[0], spec.filters, spec.stride
        self.out_hw = _window(shape[1:], (3, 3), (s, s), (1, 1), (1, 1, 1, 1))
        self.conv1 = nn.Conv2d(c, f, 3, s, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(f)
        self.conv2 = nn.Conv2d(f, f, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(f)
        self.shortcut = (nn.Sequential(nn.Conv2d(c, f, 1, s, bias=False), nn.BatchNorm2d(f))
                         if s != 1 or c != f else nn.Identity())

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))
