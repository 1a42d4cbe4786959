"""Conditional DCGAN: G(z, label) and a projection discriminator with spectral normalisation.

G: [noise, label embedding] -> dense -> 4 x 4 -> (upsample, conv, batch norm, ReLU) blocks up
to the canvas -> tanh. D: strided spectral-norm convs down to 4 x 4, summed, then
`linear(h) + <embed(label), h>` (Miyato & Koyama's projection). Hinge or non-saturating loss.
An auxiliary classifier on D's features (AC-GAN, trained on real images only) pulls G towards
the right class within a few hundred steps; without it (`aux_weight: 0`) few-step runs draw
clean strokes under the wrong labels.
A mode-seeking term (Mao et al. 2019) keeps G from drawing one image per class: it pays the
inverse of how far apart two latents' images of one label are (the two halves of each fake
batch share their labels, so the term costs no extra pass).
Each step draws one batch of fakes: D's step learns on it detached, G's step reuses it with
its graph against the updated D (as PyTorch's DCGAN example does): one G pass per step.
With few images D memorises the real set; DiffAugment (Zhao et al. 2020: the same random
shifts and cutout on real and fake images, differentiable) keeps it honest.
A config that pretrains (`pretrain.source`) adds a null label to G's and D's embeddings: the
unconditional pretraining batches carry it, and the auxiliary class loss skips those images.
"""
from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from synthaug.generators.common import GeneratorModel
from synthaug.generators.config import GANConfig


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig, channels: int, canvas: int, num_classes: int):
        super().__init__()
        n_up = int(math.log2(canvas // 4))
        width = [(cfg.width << n_up) >> i for i in range(n_up + 1)]  # 4 x 4 first, halving
        self.embed = nn.Embedding(num_classes + (cfg.pretrain.source is not None), cfg.embed_dim)
        self.dense = nn.Sequential(nn.Linear(cfg.latent_dim + cfg.embed_dim, width[0] * 16),
                                   nn.BatchNorm1d(width[0] * 16), nn.ReLU())
        blocks = []
        for cin, cout in itertools.pairwise(width):  # upsample + conv: no checkerboard
            blocks += [nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU()]
        self.blocks = nn.Sequential(*blocks, nn.Conv2d(width[-1], channels, 3, padding=1), nn.Tanh())
        self.top = width[0]

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.dense(torch.cat([z, self.embed(y)], 1))
        return self.blocks(h.view(len(z), self.top, 4, 4))


class Discriminator(nn.Module):
    def __init__(self, cfg: GANConfig, channels: int, canvas: int, num_classes: int):
        super().__init__()
        n_down = int(math.log2(canvas // 4))
        width = [(cfg.width << i) >> 1 for i in range(n_down + 1)]  # doubling down to 4 x 4
        layers = [spectral_norm(nn.Conv2d(channels, width[0], 3, padding=1)), nn.LeakyReLU(0.2)]
        for cin, cout in itertools.pairwise(width):
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.linear = spectral_norm(nn.Linear(width[-1], 1))
        null = cfg.pretrain.source is not None  # pretraining's null label
        self.embed = spectral_norm(nn.Embedding(num_classes + null, width[-1]))
        self.classify = nn.Linear(width[-1], num_classes)  # auxiliary classifier (not D's score)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(real/fake score given the label, class logits)."""
        h = self.features(x).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1), self.classify(h)


def diffaugment(x: torch.Tensor, generator: torch.Generator, cutout: bool) -> torch.Tensor:
    """Random translation (up to 1/8 of the side) and cutout (a half-side square), per image."""
    n, _, h, w = x.shape
    dev = generator.device
    shift = torch.randint(-(h // 8), h // 8 + 1, (n, 2), generator=generator, device=dev).to(x.device)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = shift[:, 0] * 2.0 / w, shift[:, 1] * 2.0 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)
    if not cutout:
        return x
    centre = torch.rand(n, 2, generator=generator, device=dev).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    cy, cx = (centre[:, 0] * h).view(n, 1, 1), (centre[:, 1] * w).view(n, 1, 1)
    keep = ((ys - cy).abs() >= h / 4) | ((xs - cx).abs() >= w / 4)
    return x * keep.unsqueeze(1).to(x.dtype)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No weight gradients for `module` in the graph built inside (restored after)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class ConditionalGAN(GeneratorModel):
    family = "gan"
    config_cls = GANConfig
    ema_prefix = "g."

    def __init__(self, config: GANConfig, shape, class_names):
        super().__init__(config, shape, class_names)
        self.g = Generator(config, self.shape[0], self.canvas, self.num_classes)
        self.d = Discriminator(config, self.shape[0], self.canvas, self.num_classes)
        self._fakes = None  # the step's fakes, from D's step to G's

    def parts(self) -> dict[str, dict]:
        # D first: each G step then faces the freshly updated D; one D step per G step (DCGAN)
        cfg = self.config
        return {"discriminator": {"params": list(self.d.parameters()),
                                  "lr": cfg.lr * cfg.d_lr_ratio, "betas": (0.5, 0.999)},
                "generator": {"params": list(self.g.parameters()), "lr": cfg.lr,
                              "betas": (0.5, 0.999)}}

    def fake(self, y: torch.Tensor, generator: torch.Generator,
             z: torch.Tensor | None = None) -> torch.Tensor:
        """G's images on the canvas, their border replaced by the padding real images get."""
        if z is None:
            z = self.noise((len(y), self.config.latent_dim), generator)
        x = self.g(z, y)
        if self.canvas == self.shape[1] == self.shape[2]:
            return x
        return self.to_canvas((self.crop(x) + 1) / 2)

    def _fake_batch(self, y: torch.Tensor, generator: torch.Generator):
        """(fakes on the canvas, their labels, their latents) for a batch of real labels y.
        With the mode-seeking term, the two halves share their labels: image i and i + n/2
        are two latents of one label, the pair the term compares."""
        if self.config.mode_seeking and len(y) >= 2:
            h = len(y) // 2
            y = torch.cat([y[:h], y[:h], y[2 * h:]])
        z = self.noise((len(y), self.config.latent_dim), generator)
        return self.fake(y, generator, z), y, z

    def _aux(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The auxiliary class loss; images under the null label (pretraining) have none."""
        if self.config.pretrain.source is None:
            return F.cross_entropy(logits.float(), y)
        keep = y < self.num_classes
        if not bool(keep.any()):
            return logits.float().sum() * 0.0
        return F.cross_entropy(logits[keep].float(), y[keep])

    def forward(self, x, y, part, generator):
        policy = self.config.diffaugment
        aug = ((lambda v: v) if policy == "off" else
               (lambda v: diffaugment(v, generator, cutout=policy.endswith("cutout"))))
        hinge = self.config.loss == "hinge"
        if part == "discriminator":
            # one batch of fakes per step (the DCGAN recipe): D learns on it detached, and the
            # generator's step that follows scores the same images, with their graph, against
            # the updated D, so G runs once per step instead of twice
            self._fakes = self._fake_batch(y, generator)
            fake, yf, _ = self._fakes
            n = len(x)  # real and fake through D in one batch (D has no batch statistics)
            out, cls = self.d(aug(torch.cat([self.to_canvas(x), fake.detach()])), torch.cat([y, yf]))
            real_out, fake_out = out[:n].float(), out[n:].float()
            if hinge:
                loss = F.relu(1 - real_out).mean() + F.relu(1 + fake_out).mean()
            else:
                loss = F.softplus(-real_out).mean() + F.softplus(fake_out).mean()
            aux = self._aux(cls[:n], y)  # the classifier learns on real images only
            return {"loss": loss + self.config.aux_weight * aux, "real": real_out.mean().detach(),
                    "fake": fake_out.mean().detach(), "aux": aux.detach()}
        fakes, self._fakes = self._fakes, None
        if fakes is None or len(fakes[1]) != len(y):  # no D step before this one
            fakes = self._fake_batch(y, generator)
        fake, yf, z = fakes
        with frozen(self.d):  # G's step needs gradients through D, not for D's weights
            fake_out, fake_cls = self.d(aug(fake), yf)
        fake_out = fake_out.float()
        loss = -fake_out.mean() if hinge else F.softplus(-fake_out).mean()
        aux = self._aux(fake_cls, yf)  # G: draw what D's classifier calls y
        out = {"loss": loss + self.config.aux_weight * aux, "aux": aux.detach()}
        if self.config.mode_seeking and len(yf) >= 2:
            # Mao et al. 2019: two latents, one label; G is rewarded for images as far apart
            # as their latents (a G that ignores z, i.e. mode collapse, pays 1 / eps)
            h = len(yf) // 2
            ratio = ((fake[:h] - fake[h:2 * h]).float().abs().mean(dim=(1, 2, 3))
                     / (z[:h] - z[h:2 * h]).abs().mean(dim=1)).mean()
            out["loss"] = out["loss"] + self.config.mode_seeking / (ratio + 1e-5)
            out["diversity"] = ratio.detach()
        return out

    def generate(self, z, labels):
        return (self.crop(self.g(z, labels)).float() + 1) / 2
