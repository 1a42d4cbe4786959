"""Semi-supervised training from labelled-few, unlabelled-many: FixMatch (Sohn et al. 2020,
"FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence", NeurIPS,
arXiv 2001.07685), in the one training loop (pipeline.classifiers.training).

Every optimiser step takes the loop's labelled batch of B images and mu x B unlabelled images
(shuffled passes over the unlabelled set, like the labelled stream). Each unlabelled image is
seen twice: weakly augmented (small shifts and rotations) and strongly augmented (larger
affine, erasing, noise, brightness/contrast: the role of RandAugment + Cutout in the paper;
digits take no flips). The pseudo-label is the argmax of the model's own softmax on the weak
view, kept where its probability is >= tau; the strong view is trained towards it with
cross-entropy, averaged over all mu x B images (masked ones count 0) and weighted lambda_u:
loss = L_labelled + lambda_u * L_unlabelled. The labelled batch is weakly augmented too.

Details checked against the reference implementations (google-research/fixmatch and
kekmodel/FixMatch-pytorch): the three views go through the network in ONE forward pass, so
BatchNorm's batch statistics see labelled and unlabelled images together (the references
interleave only to spread them over GPUs); the pseudo-labels carry no gradient; the threshold
uses the plain softmax (temperature 1). Left out: the EMA of the weights that the references
evaluate with (the loop's model selection on the validation split already picks a stable
epoch). Augmentations are per-image batched tensor ops on the training device
(pipeline.augment.batch): thousands of images per second where albumentations per image would
dominate each step on a CPU.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthaug.pipeline.augment.batch import BatchAugment
from synthaug.pipeline.core.batches import ShuffledStream, as_tensor, layout
from synthaug.pipeline.core.distributed import SINGLE, Dist
from synthaug.pipeline.data.config import FixMatchConfig


class FixMatch:
    """The unlabelled half of a FixMatch step. `forward` runs the labelled batch with its
    unlabelled companions through the network; `loss` turns the unlabelled logits into the
    masked consistency loss; `stats` reads (and resets) the share of pseudo-labels kept."""

    def __init__(self, unlabelled: np.ndarray, cfg: FixMatchConfig, device: torch.device,
                 generator: torch.Generator, dist: Dist = SINGLE):
        self.cfg, self.dist = cfg, dist
        self.xu = as_tensor(np.asarray(unlabelled), device)  # uint8 N x C x H x W
        self.stream = ShuffledStream(len(self.xu), generator)
        self.weak, self.strong = BatchAugment(cfg.weak), BatchAugment(cfg.strong)
        # its own stream on the device, one per rank (each rank augments its own part)
        seed = int(torch.randint(2**62, (1,), generator=generator)) + dist.rank
        self.aug_gen = torch.Generator(device).manual_seed(seed)
        self.kept = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0

    def forward(self, net: nn.Module, xb: torch.Tensor, batch_size: int,
                channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(labelled logits, unlabelled logits: weak views then strong views) for the labelled
        float batch `xb` (this rank's part of a batch of `batch_size`)."""
        idx = self.stream.take(self.cfg.mu * batch_size)  # every rank draws the same indices,
        idx = idx[self.dist.part(len(idx))[0]]  # keeps its part
        xu = self.xu[idx.to(self.xu.device)].float().div_(255)
        views = torch.cat([self.weak(xb, self.aug_gen), self.weak(xu, self.aug_gen),
                           self.strong(xu, self.aug_gen)])
        out = net(layout(views, channels_last))
        return out[:len(xb)], out[len(xb):]

    def loss(self, logits_u: torch.Tensor) -> torch.Tensor:
        """lambda_u x the mean over unlabelled images of the strong view's cross-entropy
        against the weak view's confident pseudo-label (0 where below tau)."""
        weak, strong = logits_u.float().chunk(2)
        with torch.no_grad():
            conf, target = weak.softmax(1).max(1)
            mask = (conf >= self.cfg.tau).float()
        self.kept += mask.sum().long()
        self.seen += len(mask)
        per_image = F.cross_entropy(strong, target, reduction="none")
        return self.cfg.lambda_u * (per_image * mask).sum() / max(1, len(mask))

    def stats(self) -> dict:
        """{"unlabelled_kept": the share of unlabelled images whose pseudo-label passed tau}
        since the last call, summed over ranks."""
        kept, seen = self.dist.sum(self.kept.item(), self.seen)
        self.kept.zero_()
        self.seen = 0
        return {"unlabelled_kept": kept / max(1, seen)}
