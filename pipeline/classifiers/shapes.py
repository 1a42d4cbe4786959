"""Shape arithmetic of the layer specs, torch-free: every layer's output shape for an input
shape (`walk`), the smallest square input a layer list can take (`min_size`) and the one line
for an input that is too small (`too_small`). The modules (pipeline.classifiers.modules) and
the model builder use it, and so does `synthaug check`, which must stay fast: a custom model
that cannot run at prepare.size is named there, before any work, with the same words `train`
would use."""
from __future__ import annotations

import math

from synthaug.pipeline.classifiers.architectures import (Act, BatchNorm, Conv, Dense, Dropout,
                                                        Flatten, GlobalAvgPool, Layer, Pool,
                                                        Residual)
from synthaug.pipeline.core.errors import SynthaugError

MAX_SEARCH = 2048  # min_size looks this far


def pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def out_size(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """floor((n + 2p - d(k - 1) - 1) / s) + 1; with d = 1 the notes' floor((n - f + 2p) / s) + 1."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def same_pad(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) for one dimension."""
    total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def pads(padding, hw, k, s, d) -> tuple[int, int, int, int]:
    """F.pad order (left, right, top, bottom)."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        return same_pad(hw[1], k[1], s[1], d[1]) + same_pad(hw[0], k[0], s[0], d[0])
    return (padding,) * 4


class TooSmall(Exception):
    """A layer's output would be empty; `walk` adds .index and .spec of the layer."""

    def __init__(self, hw):
        self.hw = hw


def window(hw, k, s, d, p) -> tuple[int, int]:
    """Output height and width of a sliding window over `hw` padded by `p` (F.pad order)."""
    h = out_size(hw[0] + p[2] + p[3], k[0], s[0], 0, d[0])
    w = out_size(hw[1] + p[0] + p[1], k[1], s[1], 0, d[1])
    if h < 1 or w < 1:
        raise TooSmall(hw)
    return h, w


def describe(spec) -> str:
    if isinstance(spec, Conv):
        k = pair(spec.kernel)
        return f"conv {k[0]}x{k[1]}"
    if isinstance(spec, Pool):
        k = pair(spec.size)
        return f"{spec.type} {k[0]}x{k[1]}"
    if isinstance(spec, Dense):
        return f"dense {spec.units}"
    return spec.type


def pool_window(spec: Pool, shape) -> tuple[tuple, tuple, tuple]:
    """A pool layer's (kernel, stride, pads) on input `shape`; its padding must leave every
    window a real pixel."""
    k = pair(spec.size)
    s = pair(spec.stride if spec.stride is not None else spec.size)
    if isinstance(spec.padding, int) and spec.padding >= min(k):
        raise SynthaugError(f"{spec.type}: padding {spec.padding} must be smaller than the "
                            f"pool size {min(k)} (a window would see only padding)")
    return k, s, pads(spec.padding, shape[1:], k, s, (1, 1))


def out_shape(spec, shape: tuple, where: str) -> tuple:
    """The output shape (no batch dim) of one spec layer on input `shape`; TooSmall when it
    would be empty, a SynthaugError when the layer cannot follow the one before."""
    if isinstance(spec, (Conv, Pool, Residual, GlobalAvgPool)) and len(shape) != 3:
        raise SynthaugError(f"{where} ({describe(spec)}) needs image maps but gets a flat vector "
                            f"of {shape[0]}; put conv/pool layers before the flatten")
    if isinstance(spec, Conv):
        k, s, d = pair(spec.kernel), pair(spec.stride), pair(spec.dilation)
        return (spec.filters, *window(shape[1:], k, s, d, pads(spec.padding, shape[1:], k, s, d)))
    if isinstance(spec, Pool):
        k, s, p = pool_window(spec, shape)
        return (shape[0], *window(shape[1:], k, s, (1, 1), p))
    if isinstance(spec, Residual):
        return (spec.filters,
                *window(shape[1:], (3, 3), (spec.stride,) * 2, (1, 1), (1, 1, 1, 1)))
    if isinstance(spec, GlobalAvgPool):
        return (shape[0],)
    if isinstance(spec, (BatchNorm, Dropout, Act)):
        return shape
    if isinstance(spec, Flatten):
        return (math.prod(shape),)
    if isinstance(spec, Dense):
        if len(shape) != 1:
            raise SynthaugError(
                f"{where} (dense {spec.units}) gets {'x'.join(map(str, shape))} image maps; "
                f"add a flatten (or globalavgpool) layer before it")
        return (spec.units,)
    raise SynthaugError(f"{where}: unknown layer {spec!r}")


def with_head(layers: list, num_classes: int) -> list:
    """The layer list plus the automatic Dense(num_classes) head when it has none."""
    from pydantic import TypeAdapter

    layers = TypeAdapter(list[Layer]).validate_python(list(layers))  # accepts dicts as well
    last = layers[-1] if layers else None
    if isinstance(last, Dense) and last.units == num_classes:
        return layers
    return [*layers, Dense(units=num_classes)]


def walk(layers: list, shape: tuple) -> list[tuple]:
    """Every layer's output shape; TooSmall (with .index, .spec) on a layer with an empty one."""
    out, n = [], len(layers)
    for i, spec in enumerate(layers):
        try:
            shape = out_shape(spec, shape, f"layer {i + 1} of {n}")
        except TooSmall as e:
            e.index, e.spec = i, spec
            raise
        out.append(shape)
    return out


def min_size(layers: list, channels: int) -> int | None:
    """The smallest square input side the layers take (None: none up to MAX_SEARCH)."""
    for n in range(1, MAX_SEARCH + 1):
        try:
            walk(layers, (channels, n, n))
            return n
        except (TooSmall, SynthaugError):
            continue
    return None


def too_small(e: TooSmall, layers: list, shape: tuple, name: str) -> SynthaugError:
    """The one line for input `shape` too small for `layers` (the full list, head included)."""
    lo = min_size(layers, shape[0])
    hint = f"; use inputs of at least {lo}x{lo} (prepare.size >= {lo})" if lo else ""
    return SynthaugError(
        f"layer {e.index + 1} of {len(layers)} ({describe(e.spec)}) gets a "
        f"{e.hw[0]}x{e.hw[1]} input: the input {'x'.join(map(str, shape))} is too small "
        f"for {name}{hint}")
