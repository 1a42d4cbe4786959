"""docs/python.md runs as written: its ```python blocks, in order and in one namespace, in a
folder laid out as a study leaves it (packed splits, a study cell's classifier, a trained
generator), made here from tiny data."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import synthaug

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "python.md"
SIZE = 16  # 8x8 scikit-learn digits, doubled


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def digits(per_class: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` scikit-learn digits of each class from `offset` on, as uint8 16 x 16 x 1."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rows = np.concatenate([np.flatnonzero(d.target == c)[offset:offset + per_class]
                           for c in range(10)])
    images = np.kron(d.images[rows], np.ones((2, 2))) * (255 / 16)
    return images.round().astype(np.uint8)[..., None], d.target[rows].astype(np.int64)


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A folder with what the page expects after `dvc repro`."""
    import torch

    from synthaug.generators.common import build_generator, save_generator
    from synthaug.generators.config import TrainGeneratorConfig

    torch.set_num_threads(1)
    names = [str(c) for c in range(10)]
    splits = {"train": digits(12, 0), "val": digits(6, 12), "test": digits(6, 18)}
    for split, (images, labels) in splits.items():
        synthaug.write_dataset(tmp_path / "data" / "prepared" / split, images, labels, names,
                               source="digits")
    (x, y), (vx, vy) = splits["train"], splits["val"]
    model, _ = synthaug.train(x, y, vx, vy, class_names=names, model="cnn", device="cpu",
                              epochs=1, epoch_size=128)
    synthaug.save_classifier(tmp_path / "models" / "classifiers" / "real" / "cnn" / "seed0", model)
    cfg = TrainGeneratorConfig().family("vae").model_copy(update={"width": 8, "latent_dim": 4})
    save_generator(tmp_path / "models" / "generators" / "vae",
                   build_generator("vae", cfg, (1, SIZE, SIZE), names).eval())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_page_has_a_snippet_per_task():
    code = "\n".join(snippets())
    for call in ("read_dataset(", "load_classifier(", "predict(", "load_generator(",
                 "sample(", "train(", "save_classifier(", "write_dataset("):
        assert f"synthaug.{call}" in code, call


def test_the_page_snippets_run(study, capsys):
    namespace: dict = {"__name__": "python_md"}
    for i, block in enumerate(snippets()):
        exec(compile(block, f"docs/python.md[python block {i + 1}]", "exec"), namespace)
    assert namespace["synthetic"].shape == (40, SIZE, SIZE, 1)
    assert namespace["synthetic"].dtype == np.uint8
    assert namespace["predicted"].shape == (60,)
    assert namespace["scores"].shape == (60, 10)
    np.testing.assert_allclose(namespace["scores"].sum(1), 1, atol=1e-4)
    assert (study / "models" / "mine" / "cnn" / "weights.safetensors").is_file()
    packed = synthaug.read_dataset(study / "data" / "mine")
    assert len(packed.labels) == 120 + 40 and packed.class_names == [str(c) for c in range(10)]
    assert "test accuracy:" in capsys.readouterr().out


def test_train_settings_replace_the_models_study_recipe(monkeypatch):
    """synthaug.train(..., epochs=2) trains 2 epochs whatever the model's per-model recipe
    (efficientnet_lite0's says 5), and keeps the recipe's other fields."""
    import numpy as np

    import synthaug
    import synthaug.pipeline.classifiers.trainer as trainer

    seen = {}

    def capture(images, labels, select, names, cfg, custom, device, progress=False):
        seen["cfg"] = cfg
        raise KeyboardInterrupt  # the recipe is all this test needs

    monkeypatch.setattr(trainer, "train_classifier", capture)
    x, y = np.zeros((4, 8, 8, 1), np.uint8), np.array([0, 1, 0, 1])
    try:
        synthaug.train(x, y, x, y, model="efficientnet_lite0", epochs=2, device="cpu")
    except KeyboardInterrupt:
        pass
    cfg = seen["cfg"]
    assert cfg.epochs == 2 and cfg.input_size == 40 and cfg.freeze_bn
    assert cfg.frozen_groups == 3 and cfg.ema_decay == 0.9
