"""Typed generator configs (torch-free, so `synthaug --help` stays fast).

One config per family: its architecture plus how long and how fast it trains (the families
want different step budgets and learning rates). `TrainGeneratorConfig` is the params.yaml section
`train_generator`: the settings all three share, and one sub-section per family. A family
config travels inside the saved generator folder (config.json), so a generator rebuilds
without params.yaml.
"""
from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from pipeline.core.settings import Device, Section

FAMILIES = ("gan", "vae", "diffusion")
AUTOENCODER_LR = 2e-3  # latent diffusion's autoencoder: a plain reconstruction task


class FamilyConfig(Section):
    """Settings every family has. Budgets are optimiser steps (batches), not epochs: quality
    follows the number of updates, so 100 or 500 training images get the same training."""

    steps: PositiveInt = 1000  # optimiser steps (GAN: one D and one G update each)
    max_seconds: NonNegativeFloat = 0  # stop early after this much training time; 0 = no cap
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 2e-4
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decay to 10% of lr
    warmup_steps: NonNegativeInt = 0  # linear learning-rate warm-up per optimiser

    @property
    def total_steps(self) -> int:
        """Every optimiser step of a run (latent diffusion adds its autoencoder's)."""
        return self.steps


class GANConfig(FamilyConfig):
    """Conditional DCGAN: label embedding into G, projection discriminator with spectral norm."""

    steps: PositiveInt = 1600
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 3e-4  # generator; the discriminator uses lr * d_lr_ratio
    d_lr_ratio: PositiveFloat = 1.0  # > 1: two time-scale update rule
    latent_dim: PositiveInt = 64
    embed_dim: PositiveInt = 32  # label embedding fed to G with the noise
    width: PositiveInt = 16  # G: width << levels channels at 4 x 4, halving per up-sampling; D mirrors it
    loss: Literal["hinge", "nonsaturating"] = "hinge"
    aux_weight: NonNegativeFloat = 1.0  # AC-GAN class loss (D on real images, G on fakes)
    mode_seeking: NonNegativeFloat = 0.1  # weight of the diversity term against mode collapse
    # the same random augmentation of real and fake images for D: fewer images needed
    diffaugment: Literal["off", "translation", "translation+cutout"] = "translation"


class VAEConfig(FamilyConfig):
    """Conditional VAE: conv encoder/decoder, the label joins both at the dense layer."""

    steps: PositiveInt = 1200
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 2e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    latent_dim: PositiveInt = 16
    embed_dim: PositiveInt = 16
    width: PositiveInt = 16  # channels of the first conv block; doubled per down-sampling
    beta: PositiveFloat = 1.0  # weight of the KL term
    kl_warmup_steps: NonNegativeInt = 300  # beta ramps up linearly over these steps


class DiffusionConfig(FamilyConfig):
    """Class-conditional diffusion: diffusers' DDPM training and DDIM sampling.

    `space: latent` (CPU default) denoises the latents of a small autoencoder trained first
    (`autoencoder_steps`) with a residual MLP; `space: pixel` denoises images directly with
    diffusers' UNet2DModel (the GPU configuration). `denoiser` picks one explicitly.
    """

    steps: PositiveInt = 2000  # the denoiser's steps (the autoencoder's come first)
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3  # the denoiser's; the autoencoder trains at AUTOENCODER_LR
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: NonNegativeInt = 100
    space: Literal["latent", "pixel"] = "latent"
    autoencoder_steps: NonNegativeInt = 600  # latent space only
    autoencoder_batch_size: PositiveInt = 32  # latent space: its batches (batch_size: the denoiser's)
    latent_channels: PositiveInt = 8  # latent: channels of the 4 x 4 latent grid
    autoencoder_width: PositiveInt = 16
    # auto: mlp in latent space, unet in pixel space (mlp works in latent space only)
    denoiser: Literal["auto", "mlp", "unet"] = "auto"
    mlp_width: PositiveInt = 256  # mlp: hidden width of its residual blocks
    mlp_blocks: PositiveInt = 3  # mlp: residual blocks
    channels: list[PositiveInt] = Field(default=[32, 64], min_length=1, max_length=5)  # unet levels
    layers_per_block: PositiveInt = 1  # unet
    attention: bool = False  # unet: self-attention in the lowest-resolution blocks
    train_timesteps: PositiveInt = 1000
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    # what the denoiser predicts: the clean sample (x0) converges in few steps, epsilon is DDPM's
    prediction: Literal["sample", "v_prediction", "epsilon"] = "sample"
    sample_steps: PositiveInt = 25  # DDIM steps
    guidance_scale: float = Field(2.0, ge=0.0)  # classifier-free guidance; 1 = none, 0 = unconditional
    label_dropout: float = Field(0.15, ge=0.0, lt=1.0)  # training with the null label (for guidance)

    @model_validator(mode="after")
    def _denoiser_fits_space(self):
        if self.denoiser == "mlp" and self.space == "pixel":
            raise ValueError("denoiser 'mlp' works in latent space only; pixel space needs "
                             "denoiser: unet")
        return self

    @property
    def total_steps(self) -> int:
        return self.steps + (self.autoencoder_steps if self.space == "latent" else 0)

    @property
    def denoiser_kind(self) -> str:
        if self.denoiser != "auto":
            return self.denoiser
        return "mlp" if self.space == "latent" else "unet"


class TrainGeneratorConfig(Section):
    """params.yaml `train_generator`: shared settings, then one sub-section per family."""

    seed: int = 0
    device: Device = "auto"
    amp: bool = True  # mixed precision, CUDA only
    threads: NonNegativeInt = 0  # CPU threads for torch; 0 = torch's default
    ema_decay: float = Field(0.995, ge=0.0, lt=1.0)  # EMA of the weights used for sampling
    log_every: PositiveInt = 100  # steps per history row (mean losses, learning rates)
    checkpoint_every: PositiveInt = 500  # steps between resume checkpoints (and val losses)
    grid_every: NonNegativeInt = 0  # steps between sample grids; 0 = only the final one
    grid_per_class: PositiveInt = 10  # images per row of a sample grid
    gan: GANConfig = GANConfig()
    vae: VAEConfig = VAEConfig()
    diffusion: DiffusionConfig = DiffusionConfig()

    def family(self, name: str) -> FamilyConfig:
        return getattr(self, name)


# -- latent-space sampling (`synthaug sample`) --------------------------------------------------

SAMPLERS = ("prior", "truncated", "slerp", "posterior_jitter", "gmm", "img2img")
# sampler -> the families it works with (the rest draw from any family's latent space)
SAMPLER_FAMILIES = {"posterior_jitter": ("vae",), "gmm": ("vae",), "img2img": ("diffusion",)}
# setting -> the samplers (or, for diffusion settings, families) it applies to
SAMPLER_SETTINGS = {"psi": ("truncated",), "sigma": ("posterior_jitter",),
                    "components": ("gmm",), "strength": ("img2img",)}
DIFFUSION_SETTINGS = ("guidance_scale", "sample_steps")


class SetConfig(Section):
    """One synthetic set (`sample.sets.<name>`): a trained generator and a way to draw from it.

    Samplers: `prior` z ~ N(0, I); `truncated` N(0, I) with components |z| > psi redrawn;
    `slerp` a random point on the great circle between two prior latents of the same class;
    `posterior_jitter` (vae) a real training image encoded, noise of scale sigma added, decoded;
    `gmm` (vae) a Gaussian mixture of `components` per class fitted to the training images'
    latents; `img2img` (diffusion) a real training image noised to `strength` and denoised.
    Diffusion sets may override the trained `guidance_scale` and `sample_steps` (DDIM).
    """

    generator: Literal["gan", "vae", "diffusion"]
    sampler: Literal[SAMPLERS] = "prior"
    psi: PositiveFloat = 0.7  # truncated: latent components beyond +-psi are redrawn
    sigma: PositiveFloat = 0.5  # posterior_jitter: noise std, in units of the posterior std
    components: PositiveInt = 3  # gmm: mixture components per class
    strength: float = Field(0.6, gt=0.0, le=1.0)  # img2img: 1 = from pure noise
    guidance_scale: float | None = Field(None, ge=0.0)  # diffusion: override the trained value
    sample_steps: PositiveInt | None = None  # diffusion: DDIM steps, override
    per_class: PositiveInt | None = None  # override sample.per_class for this set

    @model_validator(mode="after")
    def _applies(self):
        families = SAMPLER_FAMILIES.get(self.sampler)
        if families and self.generator not in families:
            raise ValueError(f"sampler {self.sampler!r} needs a {' or '.join(families)} "
                             f"generator (got {self.generator!r})")
        for key in self.model_fields_set:  # a dumped config repeats the defaults: fine
            if getattr(self, key) == type(self).model_fields[key].default:
                continue
            if key in SAMPLER_SETTINGS and self.sampler not in SAMPLER_SETTINGS[key]:
                raise ValueError(f"{key} applies to the {SAMPLER_SETTINGS[key][0]} sampler only "
                                 f"(this set uses {self.sampler!r})")
            if key in DIFFUSION_SETTINGS and self.generator != "diffusion":
                raise ValueError(f"{key} applies to diffusion generators only")
        return self

    def settings(self) -> dict:
        """The settings that shape this set's images (for provenance): sampler-specific ones
        and any overrides."""
        keep = {k for k, v in SAMPLER_SETTINGS.items() if self.sampler in v}
        keep |= {k for k in DIFFUSION_SETTINGS if getattr(self, k) is not None}
        return {k: getattr(self, k) for k in sorted(keep)}


def _default_sets() -> dict[str, SetConfig]:
    return {
        "gan-prior": SetConfig(generator="gan"),
        "vae-prior": SetConfig(generator="vae"),
        "diffusion-ddim": SetConfig(generator="diffusion"),
        "vae-jitter": SetConfig(generator="vae", sampler="posterior_jitter", sigma=1.0),
        "diffusion-img2img": SetConfig(generator="diffusion", sampler="img2img", strength=0.6),
    }


class SampleConfig(Section):
    """params.yaml `sample`: the synthetic sets drawn from the trained generators."""

    per_class: PositiveInt = 100  # images per class in each set (class-balanced)
    seed: int = 0
    device: Device = "auto"
    batch_size: PositiveInt = 500
    walk_steps: int = Field(10, ge=2, le=32)  # images per interpolation strip / latent walk row
    sets: dict[str, SetConfig] = Field(default_factory=_default_sets)
