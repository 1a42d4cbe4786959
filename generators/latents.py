"""Latent-space geometry and the helpers every sampler shares.

- `slerp` (spherical interpolation, White 2016) and `truncated_noise` (BigGAN's truncation
  trick): the geometry the `slerp` and `truncated` samplers draw with;
- `eval_mode`, `to_hwc` / `to_tensor` (the packed uint8 layout <-> float images), `uniform`;
- `interpolation` and `latent_walks`: the images of the sample stage's latent-walk figures.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from synthaug.generators.common import GeneratorModel, quantize
from synthaug.pipeline.core.batches import as_tensor


@contextlib.contextmanager
def eval_mode(model: GeneratorModel) -> Iterator[GeneratorModel]:
    """The model in eval mode, without gradients, restored to its mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def to_hwc(x01: torch.Tensor) -> np.ndarray:
    """Float N x C x H x W images in [0, 1] -> uint8 N x H x W x C (the packed layout)."""
    return quantize(x01).permute(0, 2, 3, 1).cpu().numpy()


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N x H x W x C -> float N x C x H x W in [0, 1]."""
    return as_tensor(images, device).float() / 255


def uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws of U(0, 1) (float64, on the CPU) from the generator."""
    return torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64).cpu()


def slerp(z1: torch.Tensor, z2: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents z1 and z2 (N x *latent_shape, each row one
    latent, flattened) at t (a number or N numbers): t = 0 gives z1, t = 1 gives z2 (exactly),
    and rows of equal norm keep it. Near-parallel (or opposite) rows, whose great circle is
    undefined, fall back to linear interpolation."""
    a, b = z1.flatten(1).double(), z2.flatten(1).double()
    t = torch.as_tensor(t, dtype=torch.float64, device=a.device).expand(len(a)).unsqueeze(1)
    cos = (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1, keepdim=True).clamp(-1, 1)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    flat = sin.abs() < 1e-6
    sin = torch.where(flat, torch.ones_like(sin), sin)
    wa = torch.where(flat, 1 - t, torch.sin((1 - t) * omega) / sin)
    wb = torch.where(flat, t, torch.sin(t * omega) / sin)
    return (wa * a + wb * b).to(z1.dtype).view_as(z1)


def truncated_noise(model: GeneratorModel, shape: tuple[int, ...], psi: float,
                    generator: torch.Generator) -> torch.Tensor:
    """N(0, I) noise of `shape` with every component beyond +-psi redrawn until inside."""
    z = model.noise(shape, generator)
    while (out := z.abs() > psi).any():
        z[out] = model.noise((int(out.sum()),), generator)
    return z


# -- figures ----------------------------------------------------------------------------------

def interpolation(model: GeneratorModel, z1: torch.Tensor, z2: torch.Tensor, label: int,
                  steps: int, **options) -> np.ndarray:
    """uint8 steps x H x W x C: the images of label along the slerp from latent z1 to z2
    (each of `latent_shape`), both ends included: the first is z1's image, the last z2's."""
    shape = (1, *model.latent_shape)
    z1, z2 = (torch.as_tensor(z).reshape(shape).to(model.device) for z in (z1, z2))
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    z = slerp(z1.expand(steps, *shape[1:]), z2.expand(steps, *shape[1:]), t)
    with eval_mode(model):
        return to_hwc(model.generate(z, torch.full((steps,), label, device=model.device), **options))


def latent_walks(model: GeneratorModel, generator: torch.Generator, steps: int,
                 **options) -> np.ndarray:
    """uint8 (num_classes * steps) x H x W x C: per class (class-major), the interpolation
    between two prior latents of that class."""
    z = model.noise((model.num_classes, 2, *model.latent_shape), generator)
    return np.concatenate([interpolation(model, z[c, 0], z[c, 1], c, steps, **options)
                           for c in range(model.num_classes)])
