"""Typed generator configs (torch-free, so `synthaug --help` stays fast).

One config per family: its architecture plus how long and how fast it trains (the families
want different epochs and learning rates). `TrainGeneratorConfig` is the params.yaml section
`train_generator`: the settings all three share, and one sub-section per family. A family
config travels inside the saved generator folder (config.json), so a generator rebuilds
without params.yaml.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

# pipeline.config imports this module after defining these two (see generators/__init__.py)
from pipeline.config import Device, Section

FAMILIES = ("gan", "vae", "diffusion")
AUTOENCODER_LR = 2e-3  # latent diffusion's autoencoder: a plain reconstruction task


class FamilyConfig(Section):
    """Settings every family has; the defaults are the CPU study's (500 MNIST images)."""

    epochs: PositiveInt = 50
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 2e-4
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decay to 10% of lr
    warmup_steps: NonNegativeInt = 0  # linear learning-rate warm-up per optimiser


class GANConfig(FamilyConfig):
    """Conditional DCGAN: label embedding into G, projection discriminator with spectral norm."""

    epochs: PositiveInt = 25
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 3e-4  # generator; the discriminator uses lr * d_lr_ratio
    d_lr_ratio: PositiveFloat = 1.0  # > 1: two time-scale update rule
    latent_dim: PositiveInt = 64
    embed_dim: PositiveInt = 32  # label embedding fed to G with the noise
    width: PositiveInt = 32  # G: width << levels channels at 4 x 4, halving per up-sampling; D mirrors it
    loss: Literal["hinge", "nonsaturating"] = "hinge"
    aux_weight: NonNegativeFloat = 1.0  # AC-GAN class loss (D on real images, G on fakes)
    # the same random augmentation of real and fake images for D: fewer images needed
    diffaugment: Literal["off", "translation", "translation+cutout"] = "translation"


class VAEConfig(FamilyConfig):
    """Conditional VAE: conv encoder/decoder, the label joins both at the dense layer."""

    epochs: PositiveInt = 15
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 2e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    latent_dim: PositiveInt = 16
    embed_dim: PositiveInt = 16
    width: PositiveInt = 32  # channels of the first conv block; doubled per down-sampling
    beta: PositiveFloat = 1.0  # weight of the KL term
    kl_warmup_epochs: NonNegativeInt = 5  # beta ramps up linearly over these epochs


class DiffusionConfig(FamilyConfig):
    """Class-conditional diffusion: diffusers UNet2DModel, DDPM training, DDIM sampling.

    `space: latent` (CPU default) denoises the latents of a small autoencoder trained first
    (`autoencoder_epochs`); `space: pixel` denoises images directly (the GPU configuration).
    """

    epochs: PositiveInt = 150  # autoencoder epochs included
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3  # the denoiser's; the autoencoder trains at AUTOENCODER_LR
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: NonNegativeInt = 100
    space: Literal["latent", "pixel"] = "latent"
    autoencoder_epochs: NonNegativeInt = 20  # latent space only
    latent_channels: PositiveInt = 8  # latent: channels of the 4 x 4 latent grid
    autoencoder_width: PositiveInt = 32
    channels: list[PositiveInt] = Field(default=[32, 64], min_length=1, max_length=5)
    layers_per_block: PositiveInt = 1
    attention: bool = False  # self-attention in the lowest-resolution blocks
    train_timesteps: PositiveInt = 1000
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    # what the UNet predicts: the clean sample (x0) converges in few steps, epsilon is DDPM's
    prediction: Literal["sample", "v_prediction", "epsilon"] = "sample"
    sample_steps: PositiveInt = 25  # DDIM steps
    guidance_scale: float = Field(2.0, ge=0.0)  # classifier-free guidance; 1 = none, 0 = unconditional
    label_dropout: float = Field(0.15, ge=0.0, lt=1.0)  # training with the null label (for guidance)


class TrainGeneratorConfig(Section):
    """params.yaml `train_generator`: shared settings, then one sub-section per family."""

    seed: int = 0
    device: Device = "auto"
    amp: bool = True  # mixed precision, CUDA only
    threads: NonNegativeInt = 0  # CPU threads for torch; 0 = torch's default
    ema_decay: float = Field(0.995, ge=0.0, lt=1.0)  # EMA of the weights used for sampling
    checkpoint_every: PositiveInt = 5  # epochs between resume checkpoints
    grid_every: NonNegativeInt = 25  # epochs between sample grids; 0 = only at the end
    grid_per_class: PositiveInt = 10  # images per row of a sample grid
    gan: GANConfig = GANConfig()
    vae: VAEConfig = VAEConfig()
    diffusion: DiffusionConfig = DiffusionConfig()

    def family(self, name: str) -> FamilyConfig:
        return getattr(self, name)
