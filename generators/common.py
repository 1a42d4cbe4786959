"""The one interface of every generator family, and its folder format.

A generator is an `nn.Module` built from (family config, image shape (C, H, W), class names):
- `parts()`: named groups of parameters, one optimiser each (a GAN has two);
  `active_parts(step)`: the parts trained at that optimiser step (0-based), in order (a latent
  diffusion model trains its autoencoder first, then the denoiser); `ema_prefix`: the weights
  averaged for sampling.
- `forward(x, y, part, generator)`: float images in [0, 1] (N x C x H x W) and labels ->
  a dict of scalar losses for `part`; "loss" is the one to back-propagate.
- `sample(labels, generator)`: uint8 N x C x H x W images of those labels; all randomness
  comes from `generator`, so the same seed gives the same images.
- the latent interface the samplers (`generators.samplers`) build on: `latent_shape` and
  `generate(z, labels, **options)`, the deterministic map from latents to images in [0, 1];
  `draw` (what `sample` quantizes) is `generate` of standard normal latents.
Models work on a square canvas: the next power of two >= the image size (28 -> 32); inputs
are padded to it and outputs cropped back, so sizes like 28 need no resizing.

Saved generators are folders (config.json + weights.safetensors, no pickle) that
`load_generator` rebuilds without params.yaml.
"""
from __future__ import annotations

import abc
import importlib
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthaug.generators.config import FAMILIES, FamilyConfig
from synthaug.pipeline.core.checkpoint import load_folder, save_folder
from synthaug.pipeline.core.errors import SynthaugError

# family -> "module:Class"; imported on demand (diffusion pulls in diffusers, ~6 s)
REGISTRY = {"gan": "synthaug.generators.gan:ConditionalGAN", "vae": "synthaug.generators.vae:ConditionalVAE",
            "diffusion": "synthaug.generators.diffusion:ConditionalDiffusion"}
assert tuple(REGISTRY) == FAMILIES


def canvas_size(shape: tuple[int, int, int]) -> int:
    """The square side the networks work at: a power of two >= H and W, at least 8."""
    return max(8, 2 ** math.ceil(math.log2(max(shape[1], shape[2]))))


class GeneratorModel(nn.Module, abc.ABC):
    family = ""
    config_cls: type[FamilyConfig] = FamilyConfig
    ema_prefix = ""  # state-dict prefix of the weights to average ("" = all)

    def __init__(self, config: FamilyConfig, shape: tuple[int, int, int], class_names: list[str]):
        super().__init__()
        self.config = config
        self.shape = tuple(int(s) for s in shape)
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        self.canvas = canvas_size(self.shape)
        self.step = 0  # set by the training loop (schedules such as KL warm-up read it)

    # -- training interface -------------------------------------------------------------
    def parts(self) -> dict[str, dict]:
        """name -> {"params": [...], "lr": float, "betas": (b1, b2)}, one optimiser each."""
        return {self.family: {"params": list(self.parameters()), "lr": self.config.lr,
                              "betas": (0.9, 0.999)}}

    def active_parts(self, step: int) -> list[str]:
        return list(self.parts())

    def batch_size(self, step: int) -> int:
        """Images per batch at that step (a latent diffusion model's autoencoder has its own)."""
        return self.config.batch_size

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, y: torch.Tensor, part: str,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The losses of optimiser `part` on a batch (each family implements this)."""

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 N x C x H x W images of `labels` (in eval mode, whatever the current one)."""
        was_training = self.training
        self.eval()
        try:
            return quantize(self.draw(labels.to(self.device), generator))
        finally:
            self.train(was_training)

    def draw(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Float images in [0, 1] at the image size, from prior latents z ~ N(0, I)."""
        return self.generate(self.noise((len(labels), *self.latent_shape), generator), labels)

    # -- latent interface -----------------------------------------------------------------
    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one latent (the GAN's and VAE's `latent_dim`; diffusion: its grid)."""
        return (self.config.latent_dim,)

    @abc.abstractmethod
    def generate(self, z: torch.Tensor, labels: torch.Tensor, **options) -> torch.Tensor:
        """Latents (N x *latent_shape) and labels -> float images in [0, 1] at the image size;
        deterministic (each family implements this; options are family settings)."""

    # -- helpers for the families --------------------------------------------------------
    def to_canvas(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images at their size -> [-1, 1] on the canvas, padded with black."""
        _, h, w = self.shape
        top, left = (self.canvas - h) // 2, (self.canvas - w) // 2
        x = x * 2 - 1
        if (h, w) == (self.canvas, self.canvas):
            return x
        return F.pad(x, (left, self.canvas - w - left, top, self.canvas - h - top), value=-1.0)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w = self.shape
        top, left = (self.canvas - h) // 2, (self.canvas - w) // 2
        return x[..., top:top + h, left:left + w]

    def noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Standard normal noise drawn on the generator's device, moved to the model's."""
        z = torch.randn(shape, generator=generator, device=generator.device)
        return z.to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def quantize(x01: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8."""
    return x01.float().clamp(0, 1).mul(255).round().to(torch.uint8)


def generator_class(family: str) -> type[GeneratorModel]:
    if family not in REGISTRY:
        hint = ("; a pretrained pipeline (sample.pretrained) needs no training: `synthaug "
                "sample` draws from it" if family == "pretrained" else "")
        raise SynthaugError(f"generator: unknown generator {family!r}; "
                            f"allowed: {', '.join(FAMILIES)}{hint}")
    module, name = REGISTRY[family].split(":")
    return getattr(importlib.import_module(module), name)


def build_generator(family: str, config: FamilyConfig, shape: tuple[int, int, int],
                    class_names: list[str]) -> GeneratorModel:
    return generator_class(family)(config, shape, class_names)


def save_generator(folder: Path, model: GeneratorModel, extra: dict | None = None) -> None:
    config = {"kind": "generator", "family": model.family,
              "config": model.config.model_dump(mode="json"), "shape": list(model.shape),
              "class_names": model.class_names, **(extra or {})}
    save_folder(folder, config, model.state_dict())


def nonfinite_weights(weights: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(weights that are NaN or infinite, all weights) of a state dict: a run that diverged."""
    bad = total = 0
    for t in weights.values():
        if t.is_floating_point():
            bad += int((~torch.isfinite(t)).sum())
        total += t.numel()
    return bad, total


def load_generator(folder: Path, device: str | torch.device = "cpu") -> tuple[GeneratorModel, dict]:
    """The generator saved in `folder` and its config.json; one line naming the file when it
    is not a generator, does not fit its config, or holds non-finite weights (a diverged run:
    it would draw black images)."""
    from pydantic import ValidationError

    config, weights = load_folder(folder, device)
    if config.get("kind") != "generator":
        raise SynthaugError(f"{folder}: not a generator folder (kind {config.get('kind')!r})")
    bad, total = nonfinite_weights(weights)
    if bad:
        family = config.get("family")
        raise SynthaugError(f"{folder / 'weights.safetensors'}: {bad:,} of {total:,} weights are "
                            f"not finite (the training diverged); retrain it with a lower "
                            f"train_generator.{family}.lr: `synthaug train-generator {family}`")
    cls = generator_class(config.get("family"))
    try:
        model = cls(cls.config_cls.model_validate(config["config"]), tuple(config["shape"]),
                    config["class_names"])
        model.load_state_dict(weights, strict=True)
    except (KeyError, TypeError, ValueError, ValidationError, RuntimeError) as e:
        # a generator saved by another version of synthaug, or an edited config.json
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SynthaugError(f"{folder / 'config.json'}: does not describe these weights "
                            f"({first}); retrain it with `synthaug train-generator "
                            f"{config.get('family')}` (or `dvc repro`)") from None
    # channels-last, as it trained: sampling in the default layout spent half its time
    # converting activations between layouts (GAN: 2x slower on CPU)
    return model.to(device).to(memory_format=torch.channels_last).eval(), config


@torch.no_grad()
def sample_images(model: GeneratorModel, labels, generator: torch.Generator,
                  batch_size: int = 500) -> np.ndarray:
    """uint8 N x H x W x C images (the packed data set layout) for `labels`, in batches."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    out = [model.sample(labels[i:i + batch_size].to(model.device), generator).cpu()
           for i in range(0, len(labels), batch_size)]
    if not out:
        return np.zeros((0, model.shape[1], model.shape[2], model.shape[0]), np.uint8)
    return torch.cat(out).permute(0, 2, 3, 1).numpy()
