"""Batched online augmentation on the training device: per-image random ops on a whole batch.

torchvision.transforms.v2 applied to a batched tensor draws ONE set of parameters for the whole
batch, and per-image calls are slow (about 500 img/s). Here every image gets its own draw, in a
handful of batched torch ops and no Python loop over images:

- affine (rotation, translation, scale, shear): one 2 x 3 matrix per image ->
  `affine_grid` + bilinear `grid_sample`, zeros padding (the background of digits);
- brightness / contrast jitter: per-image factors (torchvision ColorJitter's meaning);
- Gaussian noise;
- random erasing: one rectangle per image, a mask from broadcast coordinate comparisons.

Each op has its own probability, drawn per image (a Bernoulli mask); images it skips are kept
bit for bit. Every random number comes from the `torch.Generator` the caller passes (on the
batch's device), never from the global RNG: the same generator state gives the same batch.
The ops run in float32 whatever the input dtype (float32 or bf16, values in [0, 1]); the result
has the input's shape, dtype and memory format (channels_last too), clamped to [0, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from synthaug.pipeline.augment.config import BatchAugmentConfig, BatchAugmentSpec, resolve_batch_augment

ERASE_RATIO = (0.5, 2.0)  # aspect ratio (height / width) range of erased rectangles, log-uniform
_DRAWS = 16  # uniform numbers per image: a fixed layout, so one op's p never shifts another's


def affine_theta(angle: torch.Tensor, translate: torch.Tensor, scale: torch.Tensor,
                 shear: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """N x 2 x 3 matrices for `affine_grid` (align_corners=False) that move image content by
    per-image `angle` (degrees, counter-clockwise as seen, like torchvision's `rotate`),
    `translate` (N x 2 pixels, x right, y down), `scale` (N) and `shear` (N x 2 degrees:
    x' = x + tan(shear_x) y, y' = y + tan(shear_y) x), all about the image centre. Without y
    shear this equals torchvision's `affine(angle=-angle, shear=[-shear_x, 0], ...)` (bilinear)
    to float rounding.

    The forward map in centred pixel coordinates (y down) is p' = A p + t with
    A = scale * R(angle) @ Shear; grid_sample wants, for every output pixel, where to read the
    input, in normalised coordinates u = p / (size / 2): theta = [D^-1 A^-1 D | -D^-1 A^-1 t]
    with D = diag(W / 2, H / 2). Working in pixels first keeps non-square images undistorted.
    The 2 x 2 inverse is written out: no linalg call (on CUDA its error check syncs).
    """
    h, w = size
    a, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear[:, 0]), torch.deg2rad(shear[:, 1])
    cos, sin, kx, ky = torch.cos(a), torch.sin(a), torch.tan(sx), torch.tan(sy)
    # A = scale * [[cos, sin], [-sin, cos]] @ [[1, kx], [ky, 1]]
    a00, a01 = scale * (cos + sin * ky), scale * (cos * kx + sin)
    a10, a11 = scale * (cos * ky - sin), scale * (cos - sin * kx)
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    px, py = translate[:, 0], translate[:, 1]
    row0 = torch.stack([i00, i01 * h / w, -(i00 * px + i01 * py) * 2 / w], -1)
    row1 = torch.stack([i10 * w / h, i11, -(i10 * px + i11 * py) * 2 / h], -1)
    return torch.stack([row0, row1], -2)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample N x C x H x W float images through per-image `affine_theta` matrices."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def erase_mask(u: torch.Tensor, area: tuple[float, float], size: tuple[int, int]) -> torch.Tensor:
    """N x 1 x H x W bool mask of one rectangle per image from N x 4 uniforms (area, aspect
    ratio, top, left): at least one pixel, at most the whole image."""
    h, w = size
    frac = area[0] + (area[1] - area[0]) * u[:, 0]
    lo, hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    ratio = torch.exp(lo + (hi - lo) * u[:, 1])
    eh = torch.sqrt(frac * h * w * ratio).round().clamp(1, h)
    ew = torch.sqrt(frac * h * w / ratio).round().clamp(1, w)
    top = torch.floor(u[:, 2] * (h - eh + 1))
    left = torch.floor(u[:, 3] * (w - ew + 1))
    rows = torch.arange(h, device=u.device, dtype=u.dtype).view(1, 1, h, 1)
    cols = torch.arange(w, device=u.device, dtype=u.dtype).view(1, 1, 1, w)

    def v(t):
        return t.view(-1, 1, 1, 1)

    return ((rows >= v(top)) & (rows < v(top + eh))) & ((cols >= v(left)) & (cols < v(left + ew)))


def _between(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


class BatchAugment:
    """`BatchAugment(spec)(x, generator)`: per-image random augmentation of an N x C x H x W
    float batch in [0, 1]; `spec` is a preset name (light, medium, heavy) or a
    BatchAugmentConfig."""

    def __init__(self, spec: BatchAugmentSpec | dict):
        self.config: BatchAugmentConfig = resolve_batch_augment(spec)

    def __repr__(self) -> str:
        return f"BatchAugment({self.config!r})"

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"expected a float N x C x H x W batch, got {x.dtype} {tuple(x.shape)}")
        if generator.device.type != x.device.type:
            raise ValueError(f"the generator is on {generator.device}, the batch on {x.device}")
        c = self.config
        n, _, h, w = x.shape
        u = torch.rand(n, _DRAWS, generator=generator, device=x.device)

        def chosen(p: float, col: int) -> torch.Tensor:  # N x 1 x 1 x 1 Bernoulli(p) mask
            return (u[:, col] < p).view(n, 1, 1, 1)

        y = x.float()  # may be x itself: every op below makes a new tensor
        if c.p_affine > 0:
            theta = affine_theta(
                angle=_between(u[:, 1], -c.rotate, c.rotate),
                translate=torch.stack([_between(u[:, 2], -c.translate, c.translate) * w,
                                       _between(u[:, 3], -c.translate, c.translate) * h], -1),
                scale=_between(u[:, 4], *c.scale),
                shear=_between(u[:, 5:7], -c.shear, c.shear), size=(h, w))
            y = torch.where(chosen(c.p_affine, 0), warp(y, theta), y)
        if c.jitter_p > 0:
            bright = _between(u[:, 8], 1 - c.brightness, 1 + c.brightness).view(n, 1, 1, 1)
            contrast = _between(u[:, 9], 1 - c.contrast, 1 + c.contrast).view(n, 1, 1, 1)
            b = y * bright
            mean = b.mean(dim=(1, 2, 3), keepdim=True)
            y = torch.where(chosen(c.jitter_p, 7), (b - mean) * contrast + mean, y)
        if c.noise_p > 0:
            noise = torch.randn(y.shape, generator=generator, device=x.device)
            y = torch.where(chosen(c.noise_p, 10), y + c.noise_sigma * noise, y)
        if c.erase_p > 0:
            mask = erase_mask(u[:, 12:16], c.erase_scale, (h, w)) & chosen(c.erase_p, 11)
            y = y.masked_fill(mask, 0.0)
        # empty_like keeps the input's strides: channels_last in, channels_last out
        return torch.empty_like(x).copy_(y.clamp(0.0, 1.0))
