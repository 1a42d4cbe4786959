"""Architecture as data: layer specs (pydantic) and the built-in classifiers written in them.

Torch-free on purpose, so params validation stays fast; pipeline/classifiers/layers.py turns a layer list
into a torch module. Built-ins are functions of the input shape (C, H, W) because LeNet-5 is
"adapted to the input size": it pads its first convolution so a 28x28 digit is treated like
LeNet's 32x32 input.
"""
from __future__ import annotations

from typing import Annotated, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

Activation = Literal["relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu", "silu"]
Padding = Union[Literal["same", "valid"], Annotated[int, Field(ge=0)]]
Size2 = Union[PositiveInt, tuple[PositiveInt, PositiveInt]]


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Conv(_Layer):
    type: Literal["conv"] = "conv"
    filters: PositiveInt
    kernel: Size2 = 3
    stride: Size2 = 1
    padding: Padding = "valid"  # Keras' default; "same" keeps ceil(n / stride)
    dilation: Size2 = 1
    bias: bool = True
    activation: Activation | None = None


class Pool(_Layer):
    type: Literal["maxpool", "avgpool"]
    size: Size2 = 2
    stride: Size2 | None = None  # None: same as size (Keras' default)
    padding: Padding = "valid"


class GlobalAvgPool(_Layer):
    type: Literal["globalavgpool"] = "globalavgpool"


class BatchNorm(_Layer):
    type: Literal["batchnorm"] = "batchnorm"


class Dropout(_Layer):
    type: Literal["dropout"] = "dropout"
    rate: float = Field(0.5, ge=0.0, lt=1.0)


class Flatten(_Layer):
    type: Literal["flatten"] = "flatten"


class Dense(_Layer):
    type: Literal["dense"] = "dense"
    units: PositiveInt
    activation: Activation | None = None


class Act(_Layer):
    type: Literal["activation"] = "activation"
    fn: Activation


class Residual(_Layer):
    """A ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN plus a (projected) shortcut, then ReLU."""

    type: Literal["residual"] = "residual"
    filters: PositiveInt
    stride: PositiveInt = 1


Layer = Annotated[
    Union[Conv, Pool, GlobalAvgPool, BatchNorm, Dropout, Flatten, Dense, Act, Residual],
    Field(discriminator="type"),
]

# the `type` tags; pydantic puts them into error locations of discriminated unions
LAYER_TYPES = frozenset(t for cls in (Conv, Pool, GlobalAvgPool, BatchNorm, Dropout, Flatten, Dense,
                                      Act, Residual)
                        for t in cls.model_fields["type"].annotation.__args__)


def lenet5(shape: tuple[int, int, int]) -> list:
    """LeCun et al. 1998: C1 conv6 5x5, S2 pool, C3 conv16 5x5, S4 pool, C5 120, F6 84.

    C5 is a dense layer on the flattened S4 maps: on 32x32 inputs that is exactly LeNet's
    5x5 convolution (400 -> 120, 48,120 parameters) and it adapts to any other size.
    Inputs smaller than 32 get LeNet's own trick: pad to 32 (MNIST 28x28 -> pad 2).
    """
    _, h, w = shape
    pad = max(0, (32 - min(h, w) + 1) // 2)
    return [
        Conv(filters=6, kernel=5, padding=pad, activation="tanh"),
        Pool(type="avgpool", size=2),
        Conv(filters=16, kernel=5, activation="tanh"),
        Pool(type="avgpool", size=2),
        Flatten(),
        Dense(units=120, activation="tanh"),
        Dense(units=84, activation="tanh"),
    ]


def cnn(shape: tuple[int, int, int]) -> list:
    """The course notes' typical Keras CNN: conv-relu stacks with pooling, dense + dropout."""
    return [
        Conv(filters=32, kernel=3, padding="same", activation="relu"),
        Pool(type="maxpool", size=2),
        Conv(filters=64, kernel=3, padding="same", activation="relu"),
        Pool(type="maxpool", size=2),
        Conv(filters=64, kernel=3, padding="same", activation="relu"),
        Pool(type="maxpool", size=2),
        Flatten(),
        Dense(units=128, activation="relu"),
        Dropout(rate=0.5),
    ]


def resnet_small(shape: tuple[int, int, int]) -> list:
    """A CIFAR-style ResNet of basic blocks (16-32-64 filters), sized for 28-64 px images."""
    return [
        Conv(filters=16, kernel=3, padding="same", bias=False),
        BatchNorm(),
        Act(fn="relu"),
        Residual(filters=16),
        Residual(filters=32, stride=2),
        Residual(filters=64, stride=2),
        GlobalAvgPool(),
        Flatten(),
    ]


BUILTIN: dict[str, Callable[[tuple[int, int, int]], list]] = {
    "lenet5": lenet5,
    "cnn": cnn,
    "resnet_small": resnet_small,
}
