"""Recipes of use: how a variant's synthetic images enter a classifier's training.

A variant (compose.variants.NAME.use) says how its synthetic part is used, not only what it
holds; `Use.of` reads that from the variant's meta.json and manifest, and `training.fit` and
`cell.Cell` apply it. The recipes, with where they come from:
- `synthetic_weight` w: each batch's loss is the weighted mean of its samples' losses, real
  ones weighted 1 and synthetic ones w, i.e. real and synthetic samples as separate parts of
  the batch with the synthetic part's loss down- (or up-) weighted (He et al. 2023, "Is
  synthetic data from generative models ready for image recognition?", ICLR).
- `replace_p` p: the epoch stream draws only real images (and synthetic ones that have no
  parent); each drawn real image is swapped, with probability p, for one of its own synthetic
  variants (sets whose manifest names a `parent`: VAE posterior jitter, diffusion img2img),
  chosen uniformly (DA-Fusion, Trabucco et al. 2024: p = 0.5).
- `schedule: pretrain_finetune`: train on the whole variant, then fine-tune the best model on
  its real images only for `finetune_epochs` at lr x `finetune_lr_mult` (the pre-train /
  fine-tune use of synthetic data, e.g. Azizi et al. 2023, Fan et al. 2024).
- `semi_supervised: fixmatch`: the labelled-few, unlabelled-many control: the variant's images
  plus the rest of the train pool WITHOUT labels (`unlabelled`, which the sweep's when points
  hand in), trained with FixMatch's consistency loss (Sohn et al. 2020; pipeline/classifiers/
  semi.py).
Classic augmentation on top of a synthetic variant is the variant's `online_augment`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.config import REAL_DRAWN, REAL_PARTS

NON_SYNTHETIC = (*REAL_PARTS, *REAL_DRAWN)  # parts made of real images


@dataclass
class Use:
    synthetic: np.ndarray  # bool per training image: it comes from a synthetic part
    parent: np.ndarray  # int64 per image: the training-set index of its real parent, -1: none
    synthetic_weight: float = 1.0
    replace_p: float = 0.0
    schedule: str = "mixed"
    finetune_epochs: int = 3
    finetune_lr_mult: float = 0.3
    draw: np.ndarray | None = None  # the indices the stream draws from (None: see base())
    semi_supervised: str = "none"
    fixmatch: dict | None = None  # FixMatchConfig's fields
    unlabelled: np.ndarray | None = None  # N x H x W x C uint8, no labels (semi_supervised)
    where: str = "variant"  # its name in errors

    @classmethod
    def of(cls, meta: dict, manifest: list[dict] | None, where: str = "variant") -> Use | None:
        """The recipe a variant's meta.json asks for (None: plain mixing), with the per-image
        facts from its manifest rows (`part`, `part_index`, `parent`)."""
        spec = meta.get("use")
        if not spec:
            return None
        if manifest is None:
            raise SynthaugError(f"{where}: its recipe of use needs the manifest (manifest.csv); "
                                "rerun `synthaug compose`")
        part = [str(r.get("part", "")) for r in manifest]
        synthetic = np.array([p not in NON_SYNTHETIC for p in part], bool)
        # a synthetic image's `parent` indexes the real train split, which is the `real` part
        real_at = {int(r["part_index"]): i for i, r in enumerate(manifest) if r.get("part") == "real"}
        parent = np.full(len(manifest), -1, np.int64)
        for i, r in enumerate(manifest):
            if synthetic[i] and r.get("parent") not in (None, ""):
                parent[i] = real_at.get(int(float(r["parent"])), -1)
        use = cls(synthetic, parent, **spec, where=where)
        if use.replace_p > 0 and not (parent >= 0).any():
            raise SynthaugError(f"{where}: use.replace_p needs a synthetic part whose images "
                                "have a parent (a posterior_jitter or img2img set)")
        return use

    def base(self) -> np.ndarray:
        """The indices the epoch stream draws from: every image, or under replace_p every
        image that is not some real image's variant."""
        if self.draw is not None:
            return self.draw
        return np.arange(len(self.parent)) if self.replace_p <= 0 else np.flatnonzero(self.parent < 0)

    def weights(self, device: torch.device) -> torch.Tensor | None:
        """Per-image loss weights (None: all 1)."""
        if self.synthetic_weight == 1.0 or not self.synthetic.any():
            return None
        w = np.where(self.synthetic, self.synthetic_weight, 1.0).astype(np.float32)
        return torch.as_tensor(w, device=device)

    def replacer(self, generator: torch.Generator):
        """A function order -> order with each image that has variants swapped for one of
        them with probability replace_p (None without replace_p)."""
        if self.replace_p <= 0:
            return None
        kids = np.flatnonzero(self.parent >= 0)
        kids = kids[np.argsort(self.parent[kids], kind="stable")]  # grouped by parent
        parents = self.parent[kids]
        n = len(self.parent)
        start = torch.as_tensor(np.searchsorted(parents, np.arange(n)), dtype=torch.long)
        count = torch.as_tensor(np.searchsorted(parents, np.arange(n), "right"), dtype=torch.long) - start
        flat = torch.as_tensor(kids, dtype=torch.long)
        p = self.replace_p

        def replace(order: torch.Tensor) -> torch.Tensor:
            u = torch.rand(len(order), generator=generator)
            pick = torch.rand(len(order), generator=generator)
            c = count[order]
            swap = (u < p) & (c > 0)
            j = start[order] + (pick * c).long().clamp(max=(c - 1).clamp(min=0))
            return torch.where(swap, flat[j.clamp(max=max(0, len(flat) - 1))], order)

        return replace

    def real_only(self) -> np.ndarray:
        """The indices of the real images (the fine-tuning set of pretrain_finetune)."""
        return np.flatnonzero(~self.synthetic)

    def semi_config(self):
        """The FixMatch settings (pipeline.classifiers.semi) of a semi_supervised recipe, or None."""
        if self.semi_supervised == "none":
            return None
        from synthaug.pipeline.data.config import FixMatchConfig

        if self.unlabelled is None or not len(self.unlabelled):
            raise SynthaugError(f"{self.where}: use.semi_supervised needs unlabelled images; only "
                                "the sweep's when points give them (sweep.when_variants)")
        return FixMatchConfig.model_validate(self.fixmatch or {})

    def epochs(self, epochs: int) -> int:
        """The variant's train.epochs: fixmatch.epochs where set, else the recipe's."""
        cfg = self.semi_config()
        return epochs if cfg is None or cfg.epochs is None else cfg.epochs
