"""Issue 17, item 8: params files that are not text, not files or not YAML give one line
(file:line:col for YAML), and a non-finite training loss stops training naming the step."""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time

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


# ---------------------------------------------------------------- issue 31, items 6 and 7

def digits_params(folder):
    (folder / "params.yaml").write_text("prepare:\n  source: digits\n  size: 8\n")


@pytest.mark.parametrize("value,said", [
    ("prepare.seed=1\x07", "unacceptable character #x0007"),  # was: no attribute 'problem'
    ("prepare.source=caf\udce9", "-S 'prepare.source=caf\\\\xe9': not UTF-8 text"),
])
def test_s_values_with_control_characters_or_undecodable_bytes(run_cli, tmp_path, value, said):
    digits_params(tmp_path)
    one_line_error(run_cli(tmp_path, "prepare", "-S", value), said)


def test_s_values_a_c_locale_kept_as_utf8_bytes_are_read_as_utf8():
    from synthaug.stages.params import parse_override

    # "café" as UTF-8 bytes, decoded by an ASCII locale with surrogateescape
    assert parse_override("prepare.source=caf\udcc3\udca9") == (["prepare", "source"], "café")


@pytest.mark.parametrize("key", ["augment.seed", "train.seed", "compose.seed", "quality.seed",
                                 "train_generator.seed", "sample.seed", "study.seeds",
                                 "sweep.seeds", "sweep.low_data_seeds"])
@pytest.mark.parametrize("value", [-1, 2**32])
def test_seeds_out_of_range_are_one_line_in_every_section(run_cli, tmp_path, key, value):
    digits_params(tmp_path)
    text = f"[{value}]" if key.endswith("seeds") else str(value)
    one_line_error(run_cli(tmp_path, "check", "-S", f"{key}={text}"), key,
                   "greater than or equal to 0" if value < 0 else "less than or equal to 4294967295")


def test_a_seed_option_out_of_range_is_one_line(run_cli, tmp_path):
    digits_params(tmp_path)
    one_line_error(run_cli(tmp_path, "evaluate", "--seed", "-1"), "--seed: must be between 0 "
                   "and 4294967295")


def test_a_params_file_over_1_mb_is_refused_at_once(run_cli, tmp_path):
    (tmp_path / "big.yaml").write_text("sweep:\n  seeds: [" + "1, " * 400_000 + "1]\n")
    t = time.perf_counter()
    one_line_error(run_cli(tmp_path, "check", "--params", "big.yaml"), "big.yaml: larger than 1 MB")
    assert time.perf_counter() - t < 5


def test_endless_params_files_are_refused(run_cli, tmp_path):
    one_line_error(run_cli(tmp_path, "check", "--params", "/dev/zero"),
                   "/dev/zero: not a regular file")
    fifo = tmp_path / "endless.yaml"
    os.mkfifo(fifo)

    def feed():  # writes until the reader has closed its end
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as f:
            while True:
                f.write(b"# " + b"x" * 4094 + b"\n")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    one_line_error(run_cli(tmp_path, "check", "--params", str(fifo)), "larger than 1 MB")
    writer.join(timeout=10)
    assert not writer.is_alive()


@pytest.mark.parametrize("shape", ["3,99999999,99999999", "100000,28,28"])
def test_models_summary_of_an_absurd_input_shape_is_one_line(run_cli, tmp_path, shape):
    one_line_error(run_cli(tmp_path, "models", "summary", "cnn", "-i", shape),
                   "--input-shape: at most 1024 channels and 4096 pixels a side")


def test_models_summary_of_a_large_input_needs_no_memory(run_cli, tmp_path):
    r = run_cli(tmp_path, "models", "summary", "cnn", "-i", "64,4096,4096")  # a 2e9-weight dense
    assert r.exit_code == 0, r.output
    assert re.search(r"Total params: \d{1,3}(,\d{3}){3}\n", r.output)  # billions


def test_check_names_a_custom_model_too_small_for_prepare_size(run_cli, tmp_path):
    digits_params(tmp_path)
    tiny = ("[{type: conv, filters: 4, kernel: 3}, {type: maxpool, size: 2}, "
            "{type: maxpool, size: 2}, {type: maxpool, size: 2}, {type: flatten}]")
    r = run_cli(tmp_path, "check", "-S", f"models.tiny={tiny}", "-S", "study.models=[tiny]")
    one_line_error(r, "study.models: layer 4 of 6 (maxpool 2x2) gets a 1x1 input",
                   "too small for tiny", "prepare.size >= 10")


def test_the_model_check_is_torch_free(tmp_path):
    code = ("import sys; from synthaug.pipeline.experiments.checks import model_fit; "
            "from synthaug.pipeline.data.config import PrepareConfig; "
            "tiny = [{'type': 'maxpool', 'size': 2}] * 4 + [{'type': 'flatten'}]; "
            "print(model_fit({'tiny': 'study.models'}, {'tiny': tiny}, PrepareConfig(size=8)), "
            "'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "too small for tiny" in out and out.strip().endswith("False")
