"""synthaug: does synthetic data make my CNN better, which kind, how much, and when?

The `synthaug` command and `dvc repro` run the study; this module is the notebook API over the
same library (`synthaug.pipeline`, `synthaug.generators`, `synthaug.stages`):

    import synthaug

    test = synthaug.read_dataset("data/prepared/test")            # a packed data set
    model, config = synthaug.load_classifier("models/classifiers/real/cnn/seed0")
    labels = synthaug.predict(model, test.images)                 # class indices
    gan, _ = synthaug.load_generator("models/generators/gan")     # a trained generator
    images = synthaug.sample(gan, [0, 0, 1, 1], seed=0)           # uint8 N x H x W x C
    model, fit = synthaug.train(images, labels, val_images, val_labels, model="cnn")

Nothing heavy loads on `import synthaug`: torch and the library load on the first call, so
`synthaug --help` stays fast. Devices default to the best one present ("auto").
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import numpy as np
    import torch

    from synthaug.pipeline.classifiers.training import FitResult
    from synthaug.pipeline.data.storage import PackedDataset

__version__ = "0.1.0"
__all__ = ["read_dataset", "write_dataset", "load_classifier", "predict", "load_generator",
           "sample", "train", "save_classifier"]


def _device(device: str | "torch.device") -> "torch.device":
    from synthaug.pipeline.core.device import pick_device

    return pick_device(device) if isinstance(device, str) else device


def read_dataset(folder: str | Path, mmap: bool = True) -> "PackedDataset":
    """The packed data set in `folder` (images.npy, labels.npy, meta.json, as every stage
    writes them): `.images` (uint8 N x H x W x C, memory-mapped unless mmap=False),
    `.labels` (int), `.class_names`, `.meta`. A folder that is not one, or whose files
    disagree, is one SynthaugError naming the file."""
    from synthaug.pipeline.data.storage import read_dataset as read

    return read(Path(folder), mmap=mmap)


def write_dataset(folder: str | Path, images: "np.ndarray", labels: "np.ndarray",
                  class_names: Sequence[str], source: str = "python") -> None:
    """Write uint8 N x H x W x C `images` and their integer `labels` as a packed data set that
    every stage reads (e.g. as `paths.prepared`'s splits, or for `synthaug export`)."""
    from synthaug.pipeline.data.storage import write_dataset as write

    Path(folder).mkdir(parents=True, exist_ok=True)
    write(Path(folder), images, labels, list(class_names), meta={"source": source})


def load_classifier(folder: str | Path, device: str | "torch.device" = "auto"
                    ) -> "tuple[torch.nn.Module, dict]":
    """The classifier saved in `folder` (`models/<variant>/<model>` of the study, or
    `save_classifier`) in eval mode on `device`, and its config (class names, shape, recipe,
    what it was trained on)."""
    from synthaug.pipeline.classifiers.classifier import load_classifier as load

    return load(Path(folder), _device(device))


def predict(model: "torch.nn.Module", images: "np.ndarray", device: str | "torch.device" = "auto",
            probabilities: bool = False) -> "np.ndarray":
    """Class indices (or, with `probabilities`, N x classes softmax scores) for uint8
    N x H x W x C `images` of the size and channels the model was trained on."""
    from synthaug.pipeline.classifiers.training import predict as logits_of

    logits = logits_of(model, images, _device(device))
    return (logits.softmax(1) if probabilities else logits.argmax(1)).numpy()


def load_generator(folder: str | Path, device: str | "torch.device" = "auto"
                   ) -> "tuple[torch.nn.Module, dict]":
    """The generator saved in `folder` (`models/generators/<family>` of the study) in eval
    mode on `device`, and its config (family, shape, class names, training record)."""
    from synthaug.generators.common import load_generator as load

    return load(Path(folder), _device(device))


def sample(generator: "torch.nn.Module", labels: Sequence[int], seed: int = 0,
           batch_size: int = 500) -> "np.ndarray":
    """uint8 N x H x W x C images of the given class `labels`, drawn from the generator's
    prior with a seeded RNG (the same seed draws the same images)."""
    import torch

    from synthaug.generators.common import sample_images

    return sample_images(generator, list(labels), torch.Generator().manual_seed(seed),
                         batch_size)


def train(images: "np.ndarray", labels: "np.ndarray", val_images: "np.ndarray",
          val_labels: "np.ndarray", class_names: Sequence[str] | None = None,
          model: str = "cnn", seed: int = 0, device: str | "torch.device" = "auto",
          progress: bool = False, **settings: Any) -> "tuple[torch.nn.Module, FitResult]":
    """Train a classifier on uint8 N x H x W x C `images` and integer `labels`, choosing the
    best epoch on the validation arrays: the study's own recipe and training loop
    (`synthaug.pipeline.classifiers.training.train_classifier`). `model` is a built-in name
    (`synthaug models list`); `settings` are `train` section fields (epochs=10, lr=1e-3, ...)
    that replace those of the model's study recipe (`train.per_model`'s defaults included). Returns the model in eval
    mode and the fit (best epoch, history)."""
    import numpy as np

    from synthaug.pipeline.classifiers.config import TrainConfig, recipe
    from synthaug.pipeline.classifiers.trainer import train_classifier

    names = list(class_names) if class_names is not None else \
        [str(c) for c in range(int(max(np.max(labels), np.max(val_labels))) + 1)]
    # the study's recipe for `model` (its per-model fields included), then the caller's settings
    cfg = TrainConfig.model_validate({**recipe(TrainConfig(), model, seed).model_dump(),
                                      **settings})
    net, architecture, result = train_classifier(
        np.asarray(images), np.asarray(labels), (np.asarray(val_images), np.asarray(val_labels)),
        names, cfg, {}, _device(device), progress=progress)
    net.synthaug_architecture = {**architecture, "train": cfg.model_dump(mode="json")}
    return net, result


def save_classifier(folder: str | Path, model: "torch.nn.Module") -> None:
    """Save a classifier from `train` as config.json + weights.safetensors, loadable by
    `load_classifier` and `synthaug evaluate`-style readers."""
    from synthaug.pipeline.classifiers.classifier import save_classifier as save
    from synthaug.pipeline.core.errors import SynthaugError

    record = getattr(model, "synthaug_architecture", None)
    if record is None:
        raise SynthaugError("save_classifier: the model was not made by synthaug.train; "
                            "train it with synthaug.train(...) first")
    save(Path(folder), model, record)
