"""Conditional VAE (Sohn et al. 2015): q(z | x, y) and p(x | z, y), both conv nets.

The label joins at the dense layers: the encoder sees [conv features, embed(y)], the decoder
starts from [z, embed(y)]. Pixels are Bernoulli (binary cross-entropy on intensities in
[0, 1]); the loss is the negative ELBO per pixel with the KL term weighted by beta, ramped up
over `kl_warmup_steps` (validation always uses the full beta, so its numbers compare).
A config that pretrains (`pretrain.source`) adds a null label, the extra embedding row that the
unconditional pretraining images carry.
`encode` / `decode` are public: latent-space samplers build on them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from synthaug.generators.common import GeneratorModel
from synthaug.generators.config import VAEConfig


def down_convs(channels: int, width: int, canvas: int) -> tuple[nn.Sequential, int]:
    """Strided convs from the canvas down to 4 x 4; returns (net, channels at 4 x 4)."""
    layers, cin = [], channels
    for i in range(int(math.log2(canvas // 4))):
        cout = width << i
        layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.SiLU()]
        cin = cout
    return nn.Sequential(*layers), cin


def up_convs(top: int, channels: int, canvas: int) -> nn.Sequential:
    """4 x 4 x top -> (upsample, conv) blocks halving the width -> canvas x channels logits."""
    layers, cin = [], top
    for _ in range(int(math.log2(canvas // 4))):
        cout = max(8, cin // 2)
        layers += [nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, padding=1), nn.SiLU()]
        cin = cout
    return nn.Sequential(*layers, nn.Conv2d(cin, channels, 3, padding=1))


class ConditionalVAE(GeneratorModel):
    family = "vae"
    config_cls = VAEConfig

    def __init__(self, config: VAEConfig, shape, class_names):
        super().__init__(config, shape, class_names)
        c = self.shape[0]
        # + the null label of pretraining (unconditional), when the config pretrains
        self.embed = nn.Embedding(self.num_classes + (config.pretrain.source is not None), config.embed_dim)
        self.encoder, top = down_convs(c, config.width, self.canvas)
        hidden = 256
        self.enc_dense = nn.Sequential(nn.Linear(top * 16 + config.embed_dim, hidden), nn.SiLU(),
                                       nn.Linear(hidden, 2 * config.latent_dim))
        self.dec_dense = nn.Sequential(nn.Linear(config.latent_dim + config.embed_dim, hidden),
                                       nn.SiLU(), nn.Linear(hidden, top * 16), nn.SiLU())
        self.decoder = up_convs(top, c, self.canvas)
        self.top = top

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[0, 1] images (N x C x H x W) and labels -> (mu, logvar) of q(z | x, y)."""
        h = self.encoder(self.to_canvas(x)).flatten(1)
        mu, logvar = self.enc_dense(torch.cat([h, self.embed(y)], 1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.dec_dense(torch.cat([z, self.embed(y)], 1)).view(len(z), self.top, 4, 4)
        return self.crop(self.decoder(h))

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Latents and labels -> mean images in [0, 1] (N x C x H x W)."""
        return torch.sigmoid(self.decode_logits(z, y).float())

    def beta(self) -> float:
        warm = self.config.kl_warmup_steps
        if not self.training or not warm:
            return self.config.beta
        return self.config.beta * min(1.0, (self.step + 1) / warm)

    def forward(self, x, y, part, generator):
        mu, logvar = self.encode(x, y)
        z = mu + torch.exp(0.5 * logvar) * self.noise(tuple(mu.shape), generator)
        logits = self.decode_logits(z, y).float()
        pixels = x[0].numel()
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).float().sum() / len(x)
        loss = (recon + self.beta() * kl) / pixels
        return {"loss": loss, "recon": (recon / pixels).detach(), "kl": kl.detach()}

    def generate(self, z, labels):
        return self.decode(z, labels)
