"""The torch modules a layer list is built from (pipeline.classifiers.layers); their shape
arithmetic is torch-free, in pipeline.classifiers.shapes. Shapes are computed from the spec, so
every parameter exists right after construction (no lazy modules).

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

import torch
import torch.nn.functional as F
from torch import nn

from synthaug.pipeline.classifiers.architectures import Conv, Dense, Pool, Residual
from synthaug.pipeline.classifiers.shapes import pads, pair, pool_window, window

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
               "leaky_relu": lambda: nn.LeakyReLU(0.01), "elu": nn.ELU, "silu": nn.SiLU}


# ---------------------------------------------------------------- modules
class ConvLayer(nn.Module):
    """Optional asymmetric zero padding, Conv2d, optional activation: one Keras Conv2D row."""

    def __init__(self, spec: Conv, shape):
        super().__init__()
        k, s, d = pair(spec.kernel), pair(spec.stride), pair(spec.dilation)
        p = pads(spec.padding, shape[1:], k, s, d)
        self.out_hw = window(shape[1:], k, s, d, p)
        symmetric = len(set(p)) == 1
        # symmetric padding goes into the conv itself (faster); only TF-"same" odd cases need F.pad
        self.pad = None if symmetric else p
        self.conv = nn.Conv2d(shape[0], spec.filters, k, s, p[0] if symmetric else 0, d,
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
        self.k, self.s, self.pads = pool_window(spec, shape)
        self.max = spec.type == "maxpool"
        self.out_hw = window(shape[1:], self.k, self.s, (1, 1), self.pads)
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
        self.out_hw = window(shape[1:], (3, 3), (s, s), (1, 1), (1, 1, 1, 1))
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
