"""Latent-space samplers: ways to choose the latents a trained generator turns into images.

Every family maps latents to images deterministically (`GeneratorModel.generate`); a sampler
decides which latents (pythae-style: `build_sampler`, `fit` on the training split, `sample`):
- `prior`: z ~ N(0, I), what the generator was trained on (diffusion: DDIM from that noise,
  with the set's `guidance_scale` / `sample_steps` overrides).
- `truncated` (BigGAN's truncation trick, Brock et al. 2019): prior latents whose components
  beyond +-psi are redrawn until inside: more typical images, less variety.
- `slerp`: a random point (t ~ U(0, 1)) on the great circle between two prior latents of the
  image's class; spherical interpolation keeps the norm prior latents have (White 2016).
- `posterior_jitter` (vae): a training image of the class (its "parent") encoded, and
  z = mu + sigma * std * eps decoded: variations of real images.
- `gmm` (vae; ex-post density estimation, Ghosh et al. 2020): a Gaussian mixture per class
  fitted to the training images' posterior means, so latents come from where real images
  encode rather than from the prior.
- `img2img` (diffusion; SDEdit, Meng et al. 2022): a parent training image mapped to the grid,
  noised to `strength` of the DDIM schedule and denoised with guidance.

All randomness comes from the torch generator given to `sample` (sklearn gets a seed drawn
from it), so one seed and batch size give byte-identical images. Each image comes with a
provenance row: generator, sampler and settings, plus `parent` (index into the fitted
training split) for samplers that start from a real image, and `t` for slerp.
"""
from __future__ import annotations

import abc

import numpy as np
import torch

from synthaug.generators.common import GeneratorModel
from synthaug.generators.config import (
    DIFFUSION_SETTINGS,
    FAMILIES,
    SAMPLER_FAMILIES,
    SAMPLERS,
    SetConfig,
)
from synthaug.generators.latents import (eval_mode, latent_walks, slerp, to_hwc, to_tensor, truncated_noise,
                                uniform)
from synthaug.pipeline.core.errors import SynthaugError


class Sampler(abc.ABC):
    """Draws labelled images from a generator; `fit` first for samplers that need data."""

    name = ""
    needs_data = False  # fit with the training split before sample

    def __init__(self, model: GeneratorModel, cfg: SetConfig):
        self.model, self.cfg = model, cfg
        # diffusion overrides (None: the trained value), passed to generate
        self.options = {k: getattr(cfg, k) for k in DIFFUSION_SETTINGS if getattr(cfg, k) is not None}
        self.images: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.by_class: list[np.ndarray] = []

    def fit(self, images: np.ndarray, labels: np.ndarray) -> Sampler:
        """Keep the training split (uint8 N x H x W x C, labels) if this sampler needs it."""
        if not self.needs_data:
            return self
        c, h, w = self.model.shape
        labels = np.asarray(labels, dtype=np.int64)
        if images.ndim != 4 or images.shape[1:] != (h, w, c) or len(images) != len(labels):
            raise SynthaugError(f"sampler {self.name}: training images {images.shape} with "
                                f"{len(labels)} labels do not fit a generator of {h} x {w} x {c} "
                                "images")
        self.images, self.labels = images, labels
        self.by_class = [np.flatnonzero(labels == k) for k in range(self.model.num_classes)]
        return self

    def sample(self, labels: np.ndarray, generator: torch.Generator,
               batch_size: int = 500) -> tuple[np.ndarray, list[dict]]:
        """uint8 N x H x W x C images of `labels`, in batches, and one provenance dict each."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and not 0 <= labels.min() <= labels.max() < self.model.num_classes:
            raise SynthaugError(f"sampler {self.name}: labels outside 0..{self.model.num_classes - 1}")
        if self.needs_data and self.images is None:
            raise SynthaugError(f"sampler {self.name}: fit it on the training split before sampling")
        base = {"generator": self.model.family, "sampler": self.name, **self.cfg.settings()}
        c, h, w = self.model.shape
        images, rows = [np.zeros((0, h, w, c), np.uint8)], []
        with eval_mode(self.model):
            self.prepare(generator)
            for i in range(0, len(labels), batch_size):
                y = torch.from_numpy(labels[i:i + batch_size]).to(self.model.device)
                x, extra = self.draw(y, generator)
                images.append(to_hwc(x))
                rows += [{**base, **e} for e in extra]
        return np.concatenate(images), rows

    def prepare(self, generator: torch.Generator) -> None:
        """Set-up that needs randomness, once per `sample` call (none by default)."""

    @abc.abstractmethod
    def draw(self, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, list[dict]]:
        """Float images in [0, 1] of a batch of labels, and each image's extra provenance."""

    def walk(self, generator: torch.Generator, steps: int) -> tuple[np.ndarray, str]:
        """uint8 (num_classes * steps) x H x W x C, class-major: how this sampler moves through
        the latent space, one row per class; and the figure's title. By default the slerp
        between two prior latents of each class."""
        with eval_mode(self.model):
            return (latent_walks(self.model, generator, steps, **self.options),
                    "latent walk per class (slerp between two prior latents)")

    def parents(self, labels: torch.Tensor, generator: torch.Generator) -> tuple[np.ndarray, torch.Tensor]:
        """A training image of each label, chosen uniformly: (indices, [0, 1] images)."""
        idx = []
        for k, u in zip(labels.tolist(), uniform(len(labels), generator).tolist()):
            pool = self.by_class[k]
            if not len(pool):
                raise SynthaugError(f"sampler {self.name}: the training split has no image of "
                                    f"class {self.model.class_names[k]!r} to start from")
            idx.append(pool[min(int(u * len(pool)), len(pool) - 1)])
        idx = np.asarray(idx, dtype=np.int64)
        return idx, to_tensor(self.images[idx], self.model.device)


class PriorSampler(Sampler):
    name = "prior"

    def latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.model.noise((n, *self.model.latent_shape), generator)

    def draw(self, labels, generator):
        z = self.latents(len(labels), generator)
        return self.model.generate(z, labels, **self.options), [{}] * len(labels)


class TruncatedSampler(PriorSampler):
    name = "truncated"

    def latents(self, n, generator):
        return truncated_noise(self.model, (n, *self.model.latent_shape), self.cfg.psi, generator)


class SlerpSampler(Sampler):
    name = "slerp"

    def draw(self, labels, generator):
        z = self.model.noise((len(labels), 2, *self.model.latent_shape), generator)
        t = uniform(len(labels), generator)
        x = self.model.generate(slerp(z[:, 0], z[:, 1], t), labels, **self.options)
        return x, [{"t": v} for v in t.tolist()]


class PosteriorJitterSampler(Sampler):
    name = "posterior_jitter"
    needs_data = True

    def draw(self, labels, generator):
        idx, x = self.parents(labels, generator)
        mu, logvar = self.model.encode(x, labels)
        eps = self.model.noise(tuple(mu.shape), generator)
        z = mu + self.cfg.sigma * torch.exp(0.5 * logvar) * eps
        return self.model.decode(z, labels), [{"parent": int(i)} for i in idx]

    def walk(self, generator, steps):
        """Per class: from one real image's posterior mean to another's, in straight steps."""
        k = self.model.num_classes
        labels = torch.arange(k, device=self.model.device).repeat_interleave(2)
        with eval_mode(self.model):
            _, x = self.parents(labels, generator)
            mu = self.model.encode(x, labels)[0].view(k, 2, -1)
            t = torch.linspace(0, 1, steps, device=mu.device).view(1, steps, 1)
            z = (mu[:, :1] * (1 - t) + mu[:, 1:] * t).flatten(0, 1)
            rows = torch.arange(k, device=mu.device).repeat_interleave(steps)
            return (to_hwc(self.model.decode(z, rows)),
                    "posterior walk per class: from one real image's latent (left) to another's")


class GMMSampler(Sampler):
    """`fit` encodes the training images; each `sample` fits the per-class mixtures with a
    seed drawn from its generator (refitting only when that seed changes)."""

    name = "gmm"
    needs_data = True

    def fit(self, images, labels, batch_size: int = 500):
        super().fit(images, labels)
        with eval_mode(self.model):
            mus = [self.model.encode(to_tensor(images[i:i + batch_size], self.model.device),
                                     torch.from_numpy(self.labels[i:i + batch_size]).to(self.model.device))[0]
                   for i in range(0, len(images), batch_size)]
        self.mu = torch.cat(mus).double().cpu().numpy() if mus else np.zeros((0, *self.model.latent_shape))
        self.seed: int | None = None
        return self

    def prepare(self, generator):
        from sklearn.mixture import GaussianMixture

        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
        if seed == self.seed:
            return
        k, d, m = self.model.num_classes, self.mu.shape[1], self.cfg.components
        self.weights = torch.zeros(k, m, dtype=torch.float64)  # padded: classes may have < m
        self.means = torch.zeros(k, m, d, dtype=torch.float64)
        self.chol = torch.zeros(k, m, d, d, dtype=torch.float64)
        for c, pool in enumerate(self.by_class):
            if not len(pool):
                continue
            gmm = GaussianMixture(n_components=min(m, len(pool)), covariance_type="full",
                                  reg_covar=1e-4, random_state=seed).fit(self.mu[pool])
            n = gmm.n_components
            self.weights[c, :n] = torch.from_numpy(gmm.weights_)
            self.means[c, :n] = torch.from_numpy(gmm.means_)
            self.chol[c, :n] = torch.linalg.cholesky(torch.from_numpy(gmm.covariances_))
        self.seed = seed

    def draw(self, labels, generator):
        y = labels.cpu()
        if missing := sorted({self.model.class_names[c] for c in y.tolist() if not len(self.by_class[c])}):
            raise SynthaugError(f"sampler gmm: the training split has no image of class(es) "
                                f"{', '.join(map(repr, missing))} to fit a mixture to")
        comp = torch.multinomial(self.weights[y].to(generator.device), 1, generator=generator).cpu()[:, 0]
        eps = self.model.noise((len(y), self.means.shape[2], 1), generator).cpu().double()
        z = self.means[y, comp] + (self.chol[y, comp] @ eps)[..., 0]
        x = self.model.decode(z.float().to(self.model.device), labels)
        return x, [{"component": c} for c in comp.tolist()]


class Img2ImgSampler(Sampler):
    name = "img2img"
    needs_data = True

    def draw(self, labels, generator):
        idx, x = self.parents(labels, generator)
        noise = self.model.noise((len(labels), *self.model.latent_shape), generator)
        out = self.model.img2img(x, labels, noise, self.cfg.strength, **self.options)
        return out, [{"parent": int(i)} for i in idx]

    def walk(self, generator, steps):
        """Per class: a real image (left), then img2img of it at rising strength, one noise
        draw per row (strength 1, right: plain sampling from that noise)."""
        k = self.model.num_classes
        with eval_mode(self.model):
            _, x = self.parents(torch.arange(k, device=self.model.device), generator)
            noise = self.model.noise((k, *self.model.latent_shape), generator)
            cols = [x] + [self.model.img2img(x, torch.arange(k, device=x.device), noise, float(s),
                                             **self.options)
                          for s in np.linspace(0, 1, steps)[1:]]
            return (to_hwc(torch.stack(cols, 1).flatten(0, 1)),
                    "img2img per class: a real image (left), then rising strength up to 1 (right)")


SAMPLER_CLASSES: dict[str, type[Sampler]] = {cls.name: cls for cls in (
    PriorSampler, TruncatedSampler, SlerpSampler, PosteriorJitterSampler, GMMSampler,
    Img2ImgSampler)}
assert tuple(SAMPLER_CLASSES) == SAMPLERS


def build_sampler(model: GeneratorModel, cfg: SetConfig) -> Sampler:
    """The sampler `cfg` names, for `model`; a SynthaugError if they do not fit together."""
    if cfg.sampler not in SAMPLER_CLASSES:
        raise SynthaugError(f"sampler: unknown sampler {cfg.sampler!r}; allowed: {', '.join(SAMPLERS)}")
    families = SAMPLER_FAMILIES.get(cfg.sampler, FAMILIES)
    if model.family not in families:
        raise SynthaugError(f"sampler {cfg.sampler!r} needs a {' or '.join(families)} generator, "
                            f"not a {model.family} one")
    if cfg.generator != model.family:
        raise SynthaugError(f"sampler {cfg.sampler!r}: the set is for a {cfg.generator} "
                            f"generator, not a {model.family} one")
    return SAMPLER_CLASSES[cfg.sampler](model, cfg)
