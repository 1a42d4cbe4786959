"""Class-conditional diffusion: diffusers' DDPM training and DDIM sampling of a denoiser.

The label enters through the denoiser's class embedding (added to the time embedding); one extra
"null" class is the unconditional model of classifier-free guidance (Ho & Salimans 2022):
training swaps labels for it with probability `label_dropout`, sampling mixes
out = out(null) + scale * (out(label) - out(null)), whatever the UNet predicts (`prediction`:
the clean sample by default, which gives usable samples after far fewer steps on CPU than
epsilon, whose errors DDIM amplifies at high noise).

`space: pixel` denoises images on the canvas with diffusers' UNet2DModel (the GPU
configuration). On 2 CPU cores that is too slow to learn digits in minutes, so the CPU default
is `space: latent` (Rombach et al. 2022, in miniature): a small autoencoder, trained in the
first `autoencoder_steps` and frozen after, maps the canvas to a 4 x 4 x `latent_channels`
grid, and a denoiser learns that grid's distribution. Latents are standardised per image
(unit variance, the scale diffusion schedules assume), and the decoder learns on noisy
latents so that it forgives a sampler's small errors. A 4 x 4 grid has no spatial structure
worth convolving: the default denoiser (`denoiser: mlp`) is a residual MLP over the flattened
grid with FiLM conditioning (as in Li et al. 2024's MLP diffusion heads), about 30x cheaper
per step on CPU than a UNet on the same grid; `denoiser: unet` keeps the UNet there too.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from synthaug.generators.common import GeneratorModel
from synthaug.generators.config import AUTOENCODER_LR, DiffusionConfig
from synthaug.generators.vae import down_convs, up_convs
from synthaug.pipeline.core.errors import SynthaugError

LATENT_SIZE = 4
LATENT_NOISE = 0.1  # std of the noise the decoder learns to ignore


class Autoencoder(nn.Module):
    def __init__(self, channels: int, width: int, latent_channels: int, canvas: int):
        super().__init__()
        down, top = down_convs(channels, width, canvas)
        self.encoder = nn.Sequential(down, nn.Conv2d(top, latent_channels, 3, padding=1))
        self.decoder = nn.Sequential(nn.Conv2d(latent_channels, top, 3, padding=1), nn.SiLU(),
                                     up_convs(top, channels, canvas))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x).float()
        mean = z.mean(dim=(1, 2, 3), keepdim=True)
        return (z - mean) / z.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-4)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # logits on the canvas


class MLPBlock(nn.Module):
    """Pre-norm residual MLP block; the condition (time + class embedding) scales and shifts
    the normalised input (FiLM, Perez et al. 2018)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.film = nn.Linear(width, 2 * width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond).chunk(2, dim=1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class MLPDenoiser(nn.Module):
    """(noisy grid, timesteps, labels) -> the prediction, a grid of the same shape."""

    def __init__(self, cfg: DiffusionConfig, grid: tuple[int, int, int], num_embeds: int):
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        super().__init__()
        dim, width = math.prod(grid), cfg.mlp_width
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(width, width)
        self.class_embed = nn.Embedding(num_embeds, width)
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(MLPBlock(width) for _ in range(cfg.mlp_blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, g: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=g.device).expand(len(g))  # DDIM passes one timestep
        h = self.inp(g.flatten(1))
        cond = F.silu(self.time_embed(self.time_proj(t).to(h.dtype)) + self.class_embed(labels))
        for block in self.blocks:
            h = block(h, cond)
        return self.out(h).view_as(g)


class UNetDenoiser(nn.Module):
    """diffusers' UNet2DModel behind the denoiser interface."""

    def __init__(self, cfg: DiffusionConfig, grid: tuple[int, int, int], num_embeds: int):
        super().__init__()
        self.unet = build_unet(cfg, grid[1], grid[0], num_embeds)

    def forward(self, g: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.unet(g, t, class_labels=labels).sample


def build_unet(cfg: DiffusionConfig, size: int, channels: int, num_embeds: int):
    from diffusers import UNet2DModel

    levels = len(cfg.channels)
    if size % 2 ** (levels - 1):
        raise SynthaugError(f"train_generator.diffusion.channels: {levels} levels halve a "
                            f"{size} x {size} input {levels - 1} times; use fewer levels")
    groups = min(32, math.gcd(*cfg.channels))
    attn = ["Attn" if cfg.attention and i == levels - 1 else "" for i in range(levels)]
    return UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels,
        block_out_channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block,
        down_block_types=tuple(f"{a}DownBlock2D" for a in attn),
        up_block_types=tuple(f"{a}UpBlock2D" for a in reversed(attn)),
        norm_num_groups=groups, attention_head_dim=min(32, cfg.channels[-1]),
        num_class_embeds=num_embeds)


class ConditionalDiffusion(GeneratorModel):
    family = "diffusion"
    config_cls = DiffusionConfig
    ema_prefix = "denoiser."

    def __init__(self, config: DiffusionConfig, shape, class_names):
        from diffusers import DDIMScheduler, DDPMScheduler

        super().__init__(config, shape, class_names)
        latent = config.space == "latent"
        self.ae = (Autoencoder(self.shape[0], config.autoencoder_width, config.latent_channels,
                               self.canvas) if latent else None)
        self.grid = ((config.latent_channels, LATENT_SIZE, LATENT_SIZE) if latent
                     else (self.shape[0], self.canvas, self.canvas))
        denoiser = MLPDenoiser if config.denoiser_kind == "mlp" else UNetDenoiser
        self.denoiser = denoiser(config, self.grid, self.num_classes + 1)  # + the null label
        # pixels live in [-1, 1] and may be clipped; standardised latents may not
        self.ddpm = DDPMScheduler(num_train_timesteps=config.train_timesteps,
                                  beta_schedule=config.beta_schedule, clip_sample=not latent,
                                  prediction_type=config.prediction)
        self.ddim = DDIMScheduler.from_config(self.ddpm.config)

    def parts(self) -> dict[str, dict]:
        parts = {"denoiser": {"params": list(self.denoiser.parameters()), "lr": self.config.lr,
                              "betas": (0.9, 0.999)}}
        if self.ae is not None:
            parts = {"autoencoder": {"params": list(self.ae.parameters()), "lr": AUTOENCODER_LR,
                                     "betas": (0.9, 0.999)}, **parts}
        return parts

    def active_parts(self, step: int) -> list[str]:
        if self.ae is not None and step < self.config.autoencoder_steps:
            return ["autoencoder"]
        return ["denoiser"]

    def batch_size(self, step: int) -> int:
        if self.active_parts(step) == ["autoencoder"]:
            return self.config.autoencoder_batch_size
        return self.config.batch_size

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> what the UNet denoises (standardised latents or canvas pixels)."""
        x = self.to_canvas(x)
        return self.ae.encode(x) if self.ae is not None else x

    def from_grid(self, g: torch.Tensor) -> torch.Tensor:
        if self.ae is not None:
            return torch.sigmoid(self.crop(self.ae.decode(g)).float())
        return (self.crop(g).float().clamp(-1, 1) + 1) / 2

    def forward(self, x, y, part, generator):
        if part == "autoencoder":
            z = self.ae.encode(self.to_canvas(x))
            z = z + LATENT_NOISE * self.noise(tuple(z.shape), generator)
            logits = self.crop(self.ae.decode(z)).float()
            return {"loss": F.binary_cross_entropy_with_logits(logits, x)}
        with torch.no_grad():
            x0 = self.to_grid(x)
        n, dev = len(x0), generator.device
        noise = self.noise(tuple(x0.shape), generator)
        t = torch.randint(0, self.config.train_timesteps, (n,), generator=generator,
                          device=dev).to(x0.device)
        drop = torch.rand(n, generator=generator, device=dev).to(x0.device) < self.config.label_dropout
        labels = torch.where(drop, torch.full_like(y, self.num_classes), y)
        pred = self.denoiser(self.ddpm.add_noise(x0, noise, t), t, labels)
        target = {"sample": x0, "epsilon": noise}.get(self.config.prediction)
        if target is None:
            target = self.ddpm.get_velocity(x0, noise, t)
        return {"loss": F.mse_loss(pred.float(), target)}

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.grid

    def denoise(self, g: torch.Tensor, labels: torch.Tensor, start: int = 0,
                guidance_scale: float | None = None, steps: int | None = None) -> torch.Tensor:
        """DDIM (eta 0: deterministic) with classifier-free guidance from grid `g`, noised to
        the `start`-th of the `steps` DDIM timesteps (0: pure noise), to a clean grid.
        None: the trained `guidance_scale` / `sample_steps`."""
        scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        self.ddim.set_timesteps(steps or self.config.sample_steps)
        null = torch.full_like(labels, self.num_classes)
        for t in self.ddim.timesteps[start:]:
            if scale != 1.0:  # one batch: [labelled, null]; guidance mixes any prediction type
                out_c, out_u = self.denoiser(torch.cat([g, g]), t, torch.cat([labels, null])).chunk(2)
                out = out_u + scale * (out_c - out_u)
            else:
                out = self.denoiser(g, t, labels)
            g = self.ddim.step(out, t, g, eta=0.0).prev_sample
        return g

    def generate(self, z, labels, guidance_scale: float | None = None,
                 sample_steps: int | None = None):
        """DDIM from the initial noise grid z."""
        return self.from_grid(self.denoise(z, labels, 0, guidance_scale, sample_steps))

    def img2img(self, x: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor, strength: float,
                guidance_scale: float | None = None, sample_steps: int | None = None) -> torch.Tensor:
        """[0, 1] images (SDEdit, Meng et al. 2022): their grid noised with `noise` to the DDIM
        timestep `strength` of the way up the schedule, then denoised over the remaining
        steps. strength 1 starts from `noise` alone: plain sampling (`generate(noise)`)."""
        steps = sample_steps or self.config.sample_steps
        start = steps - min(steps, max(1, round(steps * strength)))  # at least one step
        g = noise
        if start:
            self.ddim.set_timesteps(steps)
            g = self.ddim.add_noise(self.to_grid(x).float(), noise, self.ddim.timesteps[start:start + 1])
        return self.from_grid(self.denoise(g, labels, start, guidance_scale, steps))
