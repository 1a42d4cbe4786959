"""Shared test helpers: run the real CLI in a folder, and make tiny image-folder sources."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def one_line_error(r, *fragments):
    """A CLI result that failed as a user error: exit 2, one `error: ` line on stderr naming
    each fragment, no traceback."""
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.output
    for f in fragments:
        assert f in r.stderr, r.stderr


@pytest.fixture
def run_cli(monkeypatch):
    """run_cli(cwd, *args) -> click Result of `synthaug *args` run inside `cwd`."""
    from typer.testing import CliRunner

    from synthaug.stages.cli import app

    def run(cwd: Path, *args):
        monkeypatch.chdir(cwd)
        return CliRunner().invoke(app, [str(a) for a in args])

    return run


@pytest.fixture
def image_folder():
    """image_folder(root, classes, per_class, size, seed) writes random gray PNGs, one
    sub-folder per class; every image is distinct. Returns root."""

    def make(root: Path, classes=("a", "b", "c"), per_class: int = 12, size=(10, 10),
             seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        for c in classes:
            (root / c).mkdir(parents=True)
            for i in range(per_class):
                px = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
                Image.fromarray(px).save(root / c / f"img{i:03d}.png")
        return root

    return make


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
