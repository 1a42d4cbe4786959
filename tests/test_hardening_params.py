"""Issue 17, item 8: params files that are not text, not files or not YAML give one line
(file:line:col for YAML), and a non-finite training loss stops training naming the step."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synthaug.pipeline.classifiers.config import TrainConfig
from synthaug.pipeline.core.errors import SynthaugError
from tests.conftest import one_line_error
from synthaug.pipeline.classifiers.classifier import channel_stats, make_classifier
from synthaug.pipeline.classifiers.layers import resolve_layers
from synthaug.pipeline.classifiers.training import fit


def test_not_utf8_params_file(run_cli, tmp_path):
    text = "prepare:\n  source: digits  # caf\xe9\n"
    (tmp_path / "params.yaml").write_bytes(text.encode("latin-1"))
    one_line_error(run_cli(tmp_path, "prepare"), "params.yaml: not UTF-8 text", "byte 0xe9")


def test_params_folder(run_cli, tmp_path):
    (tmp_path / "conf").mkdir()
    one_line_error(run_cli(tmp_path, "prepare", "--params", "conf"), "conf: is a folder")


@pytest.mark.parametrize("text,where,problem", [
    ("prepare:\n  source: [digits\n", "params.yaml:3:1", "expected ',' or ']'"),
    ("prepare:\n  source: digits\n seed: 1\n", "params.yaml:3:2", "expected <block end>"),
    ("prepare: !!python/object:os.system {}\n", "params.yaml:1:10",
     "could not determine a constructor"),
])
def test_yaml_errors_are_one_line_with_file_line_col(run_cli, tmp_path, text, where, problem):
    (tmp_path / "params.yaml").write_text(text)
    one_line_error(run_cli(tmp_path, "prepare"), f"{where}: not valid YAML", problem)


def test_non_finite_loss_stops_training_naming_the_step():
    g = torch.Generator().manual_seed(0)
    x = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 1), dtype=np.uint8)
    y = np.arange(64) % 2
    shape = (1, 16, 16)
    model = make_classifier(resolve_layers("cnn", {}, shape), shape, 2, *channel_stats(x))
    cfg = TrainConfig(lr=float("inf"), epochs=3, batch_size=16, epoch_size=0, scheduler="none")
    with pytest.raises(SynthaugError, match=r"train.lr: the training loss is not finite at "
                                            r"step 2 \(epoch 1, batch 2\)") as e:
        fit(model, (x, y), (x[:8], y[:8]), cfg, torch.device("cpu"), g, progress=False)
    assert "\n" not in str(e.value)
