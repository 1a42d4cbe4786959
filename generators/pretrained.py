"""Pretrained diffusion pipelines (diffusers) as a generator family: nothing to train.

Sets with `generator: pretrained` draw from the pipeline `sample.pretrained` names: a local
folder in diffusers' `save_pretrained` layout or a Hugging Face Hub id (Stable Diffusion
1.x/2.x, SD-Turbo, SDXL-Turbo: whatever `AutoPipelineForText2Image` loads; img2img shares its
weights through `AutoPipelineForImage2Image.from_pipe`). Weights are read from local files
only, unless `download: true` allows the Hub. Two samplers:
- `prior`: text-to-image from each class's prompt (`prompt` with `{name}`, or `prompts`);
- `img2img` (SDEdit, Meng et al. 2022, as DA-Fusion uses it, Trabucco et al. 2024): every real
  training image of the class in turn (in a seeded order, so each gets per_class / n of the
  variants), noised to `strength` and denoised under its class's prompt. Each image records
  its `parent` (the index in the train split), so the `replace_p` recipe of use swaps a real
  image for one of its own variants.
The pipeline draws at `resolution`; its images are resized (antialiased) to the train split's
size and converted to its channels (luminance for grey data sets), and grey parents are
repeated to RGB and resized up to `resolution`.

Every image has its own seed, made from the set's seed, so an image does not depend on the
batch size or on the images drawn before it. That makes a set resumable: each finished batch
is kept in a work folder (generators.resume.KeptBatches; the stage passes
paths.checkpoints/sample/<set>, outside DVC's outs) under the run's key (the set's and the
pipeline's settings, the seed, the train split's content hash); a rerun with the same key
continues after the last kept batch. `close` removes the folder once the set is written.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from synthaug.generators.config import SetConfig
from synthaug.generators.pretrained_config import (DOWNLOAD, MODEL, PRETRAINED,
                                                  PretrainedConfig, is_folder, missing)
from synthaug.generators.resume import KeptBatches
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.storage import PackedDataset


def pick_dtype(cfg: PretrainedConfig, device: torch.device) -> torch.dtype:
    import torch

    if cfg.dtype == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    return getattr(torch, cfg.dtype)


def load_pipeline(cfg: PretrainedConfig, device: torch.device):
    """The text-to-image pipeline of `cfg` on `device` (a one-line SynthaugError naming the
    setting when it cannot be loaded as allowed)."""
    if problem := missing(cfg):
        raise SynthaugError(problem)
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import logging as diffusers_logging

    local = is_folder(cfg.model)
    where = str(Path(cfg.model).expanduser()) if local else cfg.model
    diffusers_logging.set_verbosity_error()  # its notes on configs and components
    diffusers_logging.disable_progress_bar()  # the stage says what it loads
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:  # a pipeline without a transformers text encoder
        pass
    try:
        with warnings.catch_warnings():  # newer diffusers call torch_dtype `dtype`
            warnings.simplefilter("ignore", FutureWarning)
            pipe = AutoPipelineForText2Image.from_pretrained(
                where, torch_dtype=pick_dtype(cfg, device), variant=cfg.variant,
                local_files_only=local or not cfg.download)
    except (OSError, ValueError) as e:  # missing files, no network, a broken folder
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        from huggingface_hub import constants

        fix = (f"set {DOWNLOAD}: true to fetch it" if not (local or cfg.download) else
               "check the folder" if local else
               "unset HF_HUB_OFFLINE to fetch it" if constants.HF_HUB_OFFLINE else
               "check the id and the network")
        raise SynthaugError(f"{MODEL}: cannot load {where!r} ({why}); {fix}") from None
    if not cfg.safety_checker and getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def run_key(name: str, cfg: SetConfig, pcfg: PretrainedConfig, seed: int, per_class: int,
            train: PackedDataset) -> str:
    """Identity of a pretrained set's draw (not the batch size: images have their own seeds)."""
    blob = json.dumps({"set": name, "config": cfg.model_dump(mode="json"), "seed": seed,
                       "pipeline": pcfg.model_dump(mode="json", exclude={"batch_size"}),
                       "per_class": per_class, "data": train.meta.get("content_hash", ""),
                       "shape": list(train.shape), "classes": list(train.class_names)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class PretrainedSampler:
    """Draws a set's images from a loaded pipeline (see the module's docstring)."""

    def __init__(self, pipe, cfg: SetConfig, pcfg: PretrainedConfig, train: PackedDataset,
                 device: torch.device, set_name: str = "SET"):
        self.pipe, self.cfg, self.pcfg, self.train, self.device = pipe, cfg, pcfg, train, device
        self.name, self.options = cfg.sampler, {}
        self.guidance = pcfg.guidance_scale if cfg.guidance_scale is None else cfg.guidance_scale
        self.steps = cfg.sample_steps or pcfg.steps
        if cfg.sampler == "img2img" and int(self.steps * cfg.strength) < 1:
            raise SynthaugError(f"sample.sets.{set_name}: img2img runs strength x steps denoising "
                                f"steps, {cfg.strength:g} x {self.steps} < 1; raise its "
                                "sample_steps (or sample.pretrained.steps) or strength")
        names = list(train.class_names)
        if unknown := [k for k in pcfg.prompts if k not in names]:
            raise SynthaugError(f"sample.pretrained.prompts: {unknown[0]!r} is not a class of the "
                                f"train split ({', '.join(names)})")
        self.prompts = [pcfg.prompts.get(n, pcfg.prompt).format(name=n) for n in names]
        self.by_class = [np.flatnonzero(train.labels == k) for k in range(len(names))]
        self._img2img = None

    @property
    def img2img(self):
        if self._img2img is None:  # the same modules, no second copy of the weights
            from diffusers import AutoPipelineForImage2Image

            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    def plan(self, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Each image's own seed, and its parent (img2img: every real image of its class in a
        seeded order, round and round; -1 for text-to-image)."""
        rng = np.random.default_rng(seed)
        seeds = rng.integers(0, 2**63 - 1, size=len(labels), dtype=np.int64)
        parents = np.full(len(labels), -1, np.int64)
        if self.cfg.sampler == "img2img":
            for k in np.unique(labels):
                pool = self.by_class[k]
                if not len(pool):
                    raise SynthaugError(f"sampler img2img: the train split has no image of class "
                                        f"{self.train.class_names[k]!r} to start from")
                at = np.flatnonzero(labels == k)
                parents[at] = rng.permutation(pool)[np.arange(len(at)) % len(pool)]
        return seeds, parents

    def generate(self, labels: np.ndarray, seeds: np.ndarray, parents: np.ndarray,
                 strength: float | None = None, steps: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 N x H x W x C images of one pipeline call, and the safety checker's flags
        (None without one)."""
        import torch
        import torch.nn.functional as F

        from synthaug.generators.latents import to_hwc, to_tensor

        h, w, c = self.train.images.shape[1:]
        common = dict(prompt=[self.prompts[k] for k in labels], guidance_scale=self.guidance,
                      num_inference_steps=steps or self.steps, output_type="pt",
                      generator=[torch.Generator().manual_seed(int(s)) for s in seeds])
        if self.pcfg.negative_prompt:
            common["negative_prompt"] = [self.pcfg.negative_prompt.format(
                name=self.train.class_names[k]) for k in labels]
        with torch.inference_mode():
            if self.cfg.sampler == "img2img":
                x = to_tensor(self.train.images[parents], self.device)
                x = x.expand(-1, 3, -1, -1) if c == 1 else x
                side = self.pcfg.resolution
                x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False,
                                  antialias=True).clamp(0, 1)
                out = self.img2img(image=x, strength=strength or self.cfg.strength, **common)
            else:
                side = self.pcfg.resolution
                out = self.pipe(height=side, width=side, **common)
            y = out.images.float()  # N x 3 x side x side in [0, 1]
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False,
                              antialias=True).clamp(0, 1)
            if c == 1:
                y = (y * torch.tensor([0.299, 0.587, 0.114], device=y.device).view(1, 3, 1, 1)
                     ).sum(1, keepdim=True)
        flags = getattr(out, "nsfw_content_detected", None)
        return to_hwc(y), None if flags is None else np.asarray(flags, dtype=bool)

    def walk(self, generator: torch.Generator, steps: int) -> tuple[np.ndarray, str] | None:
        """img2img: per class a real image (left), then its img2img at rising strength up to 1
        (right), one seed per row; text-to-image: no walk (None)."""
        if self.cfg.sampler != "img2img":
            return None
        import torch

        k = len(self.train.class_names)
        labels = np.arange(k)
        seeds, parents = self.plan(labels, int(torch.randint(2**31 - 1, (1,), generator=generator)))
        cols, b = [self.train.images[parents]], self.pcfg.batch_size
        for s in np.linspace(0, 1, steps)[1:]:  # at least one denoising step at low strength
            n = max(self.steps, int(np.ceil(1 / s)))
            cols.append(np.concatenate([
                self.generate(labels[i:i + b], seeds[i:i + b], parents[i:i + b], float(s), n)[0]
                for i in range(0, k, b)]))
        return (np.stack(cols, 1).reshape(k * steps, *self.train.images.shape[1:]),
                "img2img per class: a real image (left), then rising strength up to 1 (right)")


class Pretrained:
    """The pipeline of `sample.pretrained`, loaded on first use on `device` and shared by the
    pretrained sets of a run (`pipe`: one loaded already, from the same settings)."""

    def __init__(self, cfg: PretrainedConfig, device: torch.device, pipe=None):
        self.cfg, self.device, self._pipe = cfg, device, pipe

    def check(self) -> None:
        """Fail now (one line) if the model cannot be loaded as allowed."""
        if problem := missing(self.cfg):
            raise SynthaugError(problem)

    @property
    def pipe(self):
        if self._pipe is None:
            self._pipe = load_pipeline(self.cfg, self.device)
        return self._pipe

    def record(self, train: PackedDataset) -> dict:
        """What the set's meta.json says it came from: the pipeline, and the train split its
        parents and classes are from (`trained_on`, the key every reader's staleness check
        compares)."""
        return {"trained_on": {"content_hash": train.meta.get("content_hash"),
                               "source": train.meta.get("source")},
                "pretrained": {"model": self.cfg.model, "variant": self.cfg.variant,
                               "dtype": str(pick_dtype(self.cfg, self.device)).removeprefix("torch."),
                               "resolution": self.cfg.resolution}}

    def draw(self, name: str, cfg: SetConfig, train: PackedDataset, seed: int, per_class: int,
             work: Path | None = None, log: Callable[[str], None] = lambda line: None):
        """`per_class` images of every class (a `generators.sets.Drawn`), resuming from and
        keeping each finished batch in `work` (None: in memory only)."""
        from synthaug.generators.sets import Drawn
        from synthaug.pipeline.data.compose import balanced_labels

        if cfg.generator != PRETRAINED:
            raise SynthaugError(f"set {name!r}: a {cfg.generator} set, not a pretrained one")
        start = time.perf_counter()
        sampler = PretrainedSampler(self.pipe, cfg, self.cfg, train, self.device, name)
        labels = balanced_labels(len(train.class_names), per_class)
        seeds, parents = sampler.plan(labels, seed)
        hwc = train.images.shape[1:]
        store = None if work is None else KeptBatches(
            work, run_key(name, cfg, self.cfg, seed, per_class, train))
        kept = [] if store is None else store.load(log)
        images, flags = [b["images"] for b in kept], [b["flagged"] for b in kept]
        done, n, size = sum(map(len, images)), len(labels), self.cfg.batch_size
        for i in range(done, n, size):
            x, f = sampler.generate(labels[i:i + size], seeds[i:i + size], parents[i:i + size])
            images.append(x)
            flags.append(np.zeros(len(x), bool) if f is None else f)
            if store is not None:
                store.keep(i, images=x, flagged=flags[-1])
            log(f"{min(i + size, n)}/{n} images ({time.perf_counter() - start:.1f} s)")
        images = np.concatenate(images) if images else np.zeros((0, *hwc), np.uint8)
        flagged = np.concatenate(flags) if flags else np.zeros(0, bool)
        base = {"generator": PRETRAINED, "sampler": cfg.sampler, **cfg.settings(),
                "guidance_scale": sampler.guidance, "sample_steps": sampler.steps,
                "model": self.cfg.model}
        rows = [{**base, "prompt": sampler.prompts[k], "image_seed": int(s),
                 **({"parent": int(p)} if p >= 0 else {}), "flagged": int(f), "set": name,
                 "seed": seed} for k, s, p, f in zip(labels, seeds, parents, flagged)]
        if flagged.any():
            log(f"warning: the pipeline's safety checker blacked out {int(flagged.sum())} "
                "image(s) (manifest column `flagged`); sample.pretrained.safety_checker: false "
                "keeps them")
        return Drawn(name, cfg, seed, images, labels, rows, sampler, time.perf_counter() - start)

    @staticmethod
    def close(work: Path) -> None:
        """The set is written: its resume state goes."""
        KeptBatches(work, "").close()

