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

from synthaug.generators.pretrain_config import PretrainConfig
from synthaug.pipeline.core.settings import Device, Seed, Section
from synthaug.generators.pretrained_config import (PRETRAINED, PRETRAINED_SAMPLERS,
                                                  PretrainedConfig)

FAMILIES = ("gan", "vae", "diffusion")
AUTOENCODER_LR = 2e-3  # latent diffusion's autoencoder: a plain reconstruction task


class FamilyConfig(Section):
    """Settings every family has. Budgets are optimiser steps (batches), not epochs: quality
    follows the number of updates, so 100 or 500 training images get the same training."""

    steps: PositiveInt = Field(1000, description="optimiser steps (GAN: one D and one G update each)")
    max_seconds: NonNegativeFloat = Field(0, description=(
        "stop early after this much training time (reported as cut_short); 0 = no cap"))
    batch_size: PositiveInt = Field(64, description="training batch size")
    lr: PositiveFloat = Field(2e-4, description="learning rate")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description=(
        "constant, or cosine: decay to 10% of lr"))
    warmup_steps: NonNegativeInt = Field(0, description=(
        "linear learning-rate warm-up per optimiser"))
    pretrain: PretrainConfig = Field(PretrainConfig(), description=(
        "pretrain, then adapt: unconditional steps on an unlabelled source first (off by "
        "default)"))

    @property
    def total_steps(self) -> int:
        """Every optimiser step of a run (latent diffusion adds its autoencoder's)."""
        return self.steps + self.pretrain.active_steps


class GANConfig(FamilyConfig):
    """Conditional DCGAN: label embedding into G, projection discriminator with spectral norm."""

    steps: PositiveInt = Field(2400, description="optimiser steps, one D and one G update each")
    batch_size: PositiveInt = Field(32, description="training batch size")
    lr: PositiveFloat = Field(3e-4, description=(
        "the generator's learning rate; the discriminator uses lr * d_lr_ratio"))
    d_lr_ratio: PositiveFloat = Field(1.0, description="> 1: two time-scale update rule")
    latent_dim: PositiveInt = Field(64, description="noise dimensions")
    embed_dim: PositiveInt = Field(32, description="label embedding fed to G with the noise")
    width: PositiveInt = Field(16, description=(
        "G: width << levels channels at 4 x 4, halving per up-sampling; D mirrors it"))
    loss: Literal["hinge", "nonsaturating"] = Field("hinge", description="adversarial loss")
    aux_weight: NonNegativeFloat = Field(1.0, description=(
        "AC-GAN class loss (D on real images, G on fakes); 0 = projection only"))
    mode_seeking: NonNegativeFloat = Field(0.1, description=(
        "weight of the diversity term against mode collapse (Mao et al. 2019); 0 = off"))
    diffaugment: Literal["off", "translation", "translation+cutout"] = Field(
        "translation", description=(
            "the same random augmentation of real and fake images for D: fewer images needed"))


class VAEConfig(FamilyConfig):
    """Conditional VAE: conv encoder/decoder, the label joins both at the dense layer."""

    steps: PositiveInt = Field(1200, description="optimiser steps")
    batch_size: PositiveInt = Field(32, description="training batch size")
    lr: PositiveFloat = Field(2e-3, description="learning rate")
    lr_schedule: Literal["constant", "cosine"] = Field("cosine", description=(
        "constant, or cosine: decay to 10% of lr"))
    latent_dim: PositiveInt = Field(16, description="latent dimensions")
    embed_dim: PositiveInt = Field(16, description="label embedding size")
    width: PositiveInt = Field(16, description=(
        "channels of the first conv block; doubled per down-sampling"))
    beta: PositiveFloat = Field(1.0, description="weight of the KL term")
    kl_warmup_steps: NonNegativeInt = Field(300, description=(
        "beta ramps up linearly over these steps"))


class DiffusionConfig(FamilyConfig):
    """Class-conditional diffusion: diffusers' DDPM training and DDIM sampling.

    `space: latent` (CPU default) denoises the latents of a small autoencoder trained first
    (`autoencoder_steps`) with a residual MLP; `space: pixel` denoises images directly with
    diffusers' UNet2DModel (the GPU configuration). `denoiser` picks one explicitly.
    """

    steps: PositiveInt = Field(2000, description=(
        "the denoiser's optimiser steps (the autoencoder's come first)"))
    batch_size: PositiveInt = Field(64, description="the denoiser's batch size")
    lr: PositiveFloat = Field(1e-3, description=(
        f"the denoiser's learning rate; the autoencoder trains at a fixed {AUTOENCODER_LR:g}"))
    lr_schedule: Literal["constant", "cosine"] = Field("cosine", description=(
        "constant, or cosine: decay to 10% of lr"))
    warmup_steps: NonNegativeInt = Field(100, description=(
        "linear learning-rate warm-up per optimiser"))
    space: Literal["latent", "pixel"] = Field("latent", description=(
        "latent: denoise a small autoencoder's 4 x 4 latent grid (CPU); pixel: denoise the "
        "images (GPU)"))
    autoencoder_steps: NonNegativeInt = Field(600, description=(
        "latent space: the autoencoder's optimiser steps, before the denoiser's"))
    autoencoder_batch_size: PositiveInt = Field(32, description=(
        "latent space: the autoencoder's batch size"))
    latent_channels: PositiveInt = Field(8, description=(
        "latent space: channels of the 4 x 4 latent grid"))
    autoencoder_width: PositiveInt = Field(16, description=(
        "latent space: channels of the autoencoder's first conv block"))
    denoiser: Literal["auto", "mlp", "unet"] = Field("auto", description=(
        "auto: mlp in latent space, unet (diffusers' UNet2DModel) in pixel space; mlp works in "
        "latent space only"))
    mlp_width: PositiveInt = Field(256, description="mlp: hidden width of its residual blocks")
    mlp_blocks: PositiveInt = Field(3, description="mlp: residual blocks")
    channels: list[PositiveInt] = Field(default=[32, 64], min_length=1, max_length=5,
                                        description="unet: block widths, one level each")
    layers_per_block: PositiveInt = Field(1, description="unet: layers per block")
    attention: bool = Field(False, description=(
        "unet: self-attention in the lowest-resolution blocks"))
    train_timesteps: PositiveInt = Field(1000, description="DDPM training timesteps")
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = Field(
        "squaredcos_cap_v2", description="the noise schedule (diffusers' names)")
    prediction: Literal["sample", "v_prediction", "epsilon"] = Field("sample", description=(
        "what the denoiser predicts: the clean sample (x0) converges in few steps, epsilon is "
        "DDPM's"))
    sample_steps: PositiveInt = Field(25, description="DDIM sampling steps")
    guidance_scale: float = Field(2.0, ge=0.0, description=(
        "classifier-free guidance; 1 = none, 0 = unconditional"))
    label_dropout: float = Field(0.15, ge=0.0, lt=1.0, description=(
        "share of training labels replaced by the null label (for guidance)"))

    @model_validator(mode="after")
    def _denoiser_fits_space(self):
        if self.denoiser == "mlp" and self.space == "pixel":
            raise ValueError("denoiser 'mlp' works in latent space only; pixel space needs "
                             "denoiser: unet")
        return self

    @property
    def total_steps(self) -> int:
        ae = self.autoencoder_steps if self.space == "latent" else 0
        return self.steps + self.pretrain.active_steps + ae

    @property
    def denoiser_kind(self) -> str:
        if self.denoiser != "auto":
            return self.denoiser
        return "mlp" if self.space == "latent" else "unet"


class TrainGeneratorConfig(Section):
    """params.yaml `train_generator`: shared settings, then one sub-section per family."""

    seed: Seed = Field(0, description="weight initialisation and batch order")
    device: Device = Field("auto", description=(
        "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"))
    amp: bool = Field(True, description="mixed precision on CUDA (bf16 where supported, else fp16)")
    cpu_bf16: bool = Field(True, description=(
        "bf16 autocast on CPUs that run it natively (AVX512-BF16, AMX): steps 15-30% faster "
        "there, the same quality; other CPUs train in fp32"))
    threads: NonNegativeInt = Field(0, description=(
        "CPU threads for torch in each training process; 0 = a worker's share of the cores "
        "(train_generator.workers), or torch's default in a single process"))
    workers: NonNegativeInt = Field(0, description=(
        "processes that train the families side by side on a CPU, one thread each (a family's "
        "weights are the same for any number of them); 0: one per family, at most 4 (on one "
        "core: 1), 1: one after the other in the command's process (a GPU and torchrun always)"))
    ema_decay: float = Field(0.995, ge=0.0, lt=1.0, description=(
        "EMA of the weights, the ones used for sampling"))
    log_every: PositiveInt = Field(100, description=(
        "steps per history row (mean losses, learning rates)"))
    checkpoint_every: PositiveInt = Field(500, description=(
        "steps between resume checkpoints (and validation losses)"))
    grid_every: NonNegativeInt = Field(0, description=(
        "steps between sample grids; 0 = only the final one"))
    grid_per_class: PositiveInt = Field(10, description="images per row of a sample grid")
    gan: GANConfig = Field(GANConfig(), description="the conditional DCGAN")
    vae: VAEConfig = Field(VAEConfig(), description="the conditional VAE")
    diffusion: DiffusionConfig = Field(DiffusionConfig(), description=(
        "the class-conditional (latent) diffusion model"))

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

    generator: Literal["gan", "vae", "diffusion", "pretrained"] = Field(description=(
        "the trained generator to draw from (required), or pretrained: the diffusers "
        "pipeline of sample.pretrained"))
    sampler: Literal[SAMPLERS] = Field("prior", description=(
        "prior, truncated, slerp, posterior_jitter (vae), gmm (vae) or img2img (diffusion, "
        "pretrained); pretrained: prior (text-to-image from the class prompts) or img2img"))
    psi: PositiveFloat = Field(0.7, description=(
        "truncated: latent components beyond +-psi are redrawn"))
    sigma: PositiveFloat = Field(0.5, description=(
        "posterior_jitter: noise std, in units of the posterior std"))
    components: PositiveInt = Field(3, description="gmm: mixture components per class")
    strength: float = Field(0.6, gt=0.0, le=1.0, description="img2img: 1 = from pure noise")
    guidance_scale: float | None = Field(None, ge=0.0, description=(
        "diffusion: override the trained guidance scale; pretrained: sample.pretrained's"))
    sample_steps: PositiveInt | None = Field(None, description=(
        "diffusion: override the trained DDIM steps; pretrained: sample.pretrained.steps"))
    per_class: PositiveInt | None = Field(None, description=(
        "override sample.per_class for this set"))

    @model_validator(mode="after")
    def _applies(self):
        families = SAMPLER_FAMILIES.get(self.sampler)
        if self.generator == PRETRAINED and self.sampler not in PRETRAINED_SAMPLERS:
            raise ValueError(f"sampler {self.sampler!r} does not apply to a pretrained pipeline "
                             f"(allowed: {', '.join(PRETRAINED_SAMPLERS)})")
        if families and self.generator not in (*families, PRETRAINED):
            raise ValueError(f"sampler {self.sampler!r} needs a {' or '.join(families)} "
                             f"generator (got {self.generator!r})")
        for key in self.model_fields_set:  # a dumped config repeats the defaults: fine
            if getattr(self, key) == type(self).model_fields[key].default:
                continue
            if key in SAMPLER_SETTINGS and self.sampler not in SAMPLER_SETTINGS[key]:
                raise ValueError(f"{key} applies to the {SAMPLER_SETTINGS[key][0]} sampler only "
                                 f"(this set uses {self.sampler!r})")
            if key in DIFFUSION_SETTINGS and self.generator not in ("diffusion", PRETRAINED):
                raise ValueError(f"{key} applies to diffusion and pretrained generators only")
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
    """params.yaml `sample`: the synthetic sets drawn from the trained generators (and from a
    pretrained pipeline, `sample.pretrained`)."""

    per_class: PositiveInt = Field(100, description=(
        "images per class in each set (class-balanced)"))
    seed: Seed = Field(0, description="each set draws with a seed made from this and its name")
    device: Device = Field("auto", description=(
        "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"))
    batch_size: PositiveInt = Field(500, description="images per sampling batch")
    walk_steps: int = Field(10, ge=2, le=32, description=(
        "images per interpolation strip / latent walk row"))
    sets: dict[str, SetConfig] = Field(default_factory=_default_sets, description=(
        "the synthetic sets, by name: a generator and a sampler each"))
    pretrained: PretrainedConfig = Field(PretrainedConfig(), description=(
        "the pretrained diffusers pipeline of the sets with generator: pretrained"))

    @model_validator(mode="after")
    def _pretrained_model(self):
        users = [n for n, s in self.sets.items() if s.generator == PRETRAINED]
        if users and not self.pretrained.model:
            raise ValueError(f"pretrained.model: set {users[0]!r} draws from a pretrained "
                             "pipeline; name its folder or Hub id")
        return self
