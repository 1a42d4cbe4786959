"""Memorisation: how close each synthetic image is to the training images, in pixels.

`nearest_train` (RMS pixel distance in [0, 1] units to the nearest training image, and its
index), `train_radius` (each training image's distance to its own nearest neighbour) and
`near_copies` (closer to a training image than copy_threshold x that image's radius).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _flat(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).reshape(len(images), -1).float() / 255


def _nearest(a: np.ndarray, b: np.ndarray, skip_self: bool,
             chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    fa, fb = _flat(a), _flat(b)
    nb = (fb * fb).sum(1)
    dist, index = np.empty(len(fa)), np.empty(len(fa), dtype=np.int64)
    for i in range(0, len(fa), chunk):
        x = fa[i:i + chunk]
        d2 = (x * x).sum(1, keepdim=True) + nb[None] - 2 * x @ fb.T  # float32: for the argmin
        if skip_self:
            rows = torch.arange(len(x))
            d2[rows, rows + i] = math.inf
        idx = d2.argmin(1)
        # the exact distance of the chosen pair, in float64
        dist[i:i + len(x)] = (x.double() - fb[idx].double()).square().mean(1).sqrt().numpy()
        index[i:i + len(x)] = idx.numpy()
    return dist, index


def nearest_train(fake: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each fake image's nearest training image in pixel space: (RMS distance in [0, 1] units,
    training index). Chunked: memory ~ the two image sets in float32 + 256 x len(train)."""
    if fake.shape[1:] != train.shape[1:]:
        raise ValueError(f"image shapes differ: {fake.shape[1:]} vs {train.shape[1:]}")
    return _nearest(fake, train, skip_self=False)


def train_radius(train: np.ndarray) -> np.ndarray:
    """Each training image's RMS distance to its nearest OTHER training image."""
    if len(train) < 2:
        raise ValueError("train_radius needs at least 2 training images")
    return _nearest(train, train, skip_self=True)[0]


def near_copies(dist: np.ndarray, idx: np.ndarray, radius: np.ndarray,
                copy_threshold: float) -> np.ndarray:
    """Near-copy mask: closer to the nearest training image than copy_threshold x that
    image's own nearest-neighbour distance."""
    return np.asarray(dist) < copy_threshold * np.asarray(radius)[np.asarray(idx)]
