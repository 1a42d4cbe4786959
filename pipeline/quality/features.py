"""Feature spaces for the distribution metrics: a trained classifier's penultimate layer (the
judge's: the domain features of FID-domain and PRDC) and, optionally, EfficientNet-Lite0's
ImageNet features (weights from the installed package, offline).

Features are computed once per set (`features`), so a set is never pushed through a network
twice; torchmetrics then gets them through an identity module (pipeline.quality.distribution).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from synthaug.pipeline.core.batches import inference_batch

LITE0_SIZE = 64  # ImageNet features: images are resized to this inside EfficientNet-Lite0


class FeatureExtractor(nn.Module):
    """A trained classifier's penultimate features: the input of its last `nn.Linear`.

    Takes uint8 (0..255) or float ([0, 1]) N x C x H x W images, as torchmetrics passes them,
    and returns N x `num_features`. Always in eval mode and without gradients.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("the model has no nn.Linear layer to take features from")
        self.model = model.eval()
        self.num_features = linears[-1].in_features
        self._out: torch.Tensor | None = None
        self._listening = False
        linears[-1].register_forward_pre_hook(self._grab)

    def _grab(self, module: nn.Module, args: tuple) -> None:
        if self._listening:  # the model may also be used on its own (predict, gate)
            self._out = args[0]

    def train(self, mode: bool = True):
        return super().train(False)  # a fixed feature network: eval, whatever `mode`

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        x = x.to(device)
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        self._listening = True
        try:
            self.model(x)
        finally:
            self._listening = False
        out, self._out = self._out, None
        return out.flatten(1)


def features(extractor: FeatureExtractor, images: np.ndarray, device: torch.device,
             batch_size: int = 512) -> torch.Tensor:
    """Features (float64 N x d, CPU) of uint8 N x H x W x C images."""
    extractor.to(device)
    batch_size = inference_batch(device, batch_size)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    out = [extractor(x[i:i + batch_size].to(device)).double().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, extractor.num_features, dtype=torch.float64)


def imagenet_extractor(shape: tuple[int, int, int],
                       device: torch.device) -> tuple[FeatureExtractor | None, str]:
    """EfficientNet-Lite0 ImageNet features (the pooled 1280-d vector before its classifier),
    or None; the string says which weights file, or why there are none.

    pipeline.classifiers.transfer's wrapper adapts the input: gray -> RGB, bilinear resize to 64 px, and
    the normalisation these weights were trained with (Lite0's (x - 0.5) / 0.5).
    """
    from synthaug.pipeline.core.errors import SynthaugError
    from synthaug.pipeline.classifiers.transfer import build_transfer

    if shape[0] not in (1, 3):
        return None, f"ImageNet features need 1- or 3-channel images (got {shape[0]})"
    try:
        model, source = build_transfer("efficientnet_lite0", 1, input_size=LITE0_SIZE,
                                       strategy="linear_probe")
    except (SynthaugError, ImportError, OSError) as e:
        return None, str(e)
    # channels-last: the depthwise convolutions' fast CPU kernels (1,000 images at 64 px on
    # one thread: 5.7 -> 3.4 s; features equal within 4e-6 relative)
    return FeatureExtractor(model.to(device, memory_format=torch.channels_last)), source or ""
