"""`synthaug quality` end to end on tiny data: the sets scored side by side in worker processes
give the table one process gives, in the same order, with every figure; bad input is one line."""
import json

import numpy as np
import pytest
import yaml

from synthaug.pipeline.data.storage import write_dataset
from tests.conftest import one_line_error

CLASSES = ["top", "middle", "bottom"]
GOOD, JUNK = ["vae-prior", "diffusion-ddim", "vae-jitter", "diffusion-img2img"], "gan-prior"
SETS = ["real-val", JUNK, *GOOD, "noise"]  # params.yaml's order of sample.sets


def _bars(rng, per_class: int, jitter: int = 0):
    """28 x 28 x 1 images of a bright bar whose place is the class (shifted up to `jitter`)."""
    labels = np.repeat(np.arange(3), per_class)
    images = rng.integers(0, 60, (len(labels), 28, 28, 1), dtype=np.uint8)
    for i, label in enumerate(labels):
        top = 4 + 8 * label + int(rng.integers(-jitter, jitter + 1))
        images[i, top:top + 6, 4:24] = 220
    return images, labels


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Prepared splits, two 'synthetic' sets (a good one and noise-like) and a trained judge."""
    from typer.testing import CliRunner

    from synthaug.stages.cli import app

    root = tmp_path_factory.mktemp("quality")
    rng = np.random.default_rng(0)

    def write(folder, images, labels, meta=None):
        (root / folder).mkdir(parents=True)
        return write_dataset(root / folder, images, labels, CLASSES, meta=meta)

    for split, n in (("train", 12), ("val", 8), ("test", 8)):
        made = write(f"data/prepared/{split}", *_bars(rng, n, 1))
        if split == "train":  # what `synthaug sample` records: the generator's train split
            drawn = {"kind": "synthetic", "generator_trained_on": {"content_hash": made["content_hash"]}}
    for name in GOOD:  # the default sets' names: bars shifted a little more than the real ones
        write(f"data/synthetic/{name}", *_bars(rng, 10, 2), meta=drawn)
    junk, labels = _bars(rng, 10)
    write(f"data/synthetic/{JUNK}", rng.integers(0, 255, junk.shape, dtype=np.uint8), labels,
          meta=drawn)
    params = {"quality": {"epochs": 1, "imagenet_features": False, "k": 3, "kid_subset_size": 10}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    import os

    here = os.getcwd()
    os.chdir(root)
    try:
        r = CliRunner().invoke(app, ["judge"])
    finally:
        os.chdir(here)
    assert r.exit_code == 0, r.output
    return root


def _table(root):
    return json.loads((root / "reports/quality/quality.json").read_text())


def test_sets_scored_side_by_side_give_the_same_table(run_cli, project):
    """Two one-thread workers give, bit for bit, the table of one one-thread process."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = run_cli(project, "quality", "--no-progress", "-S", "quality.workers=1")
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output
    alone = _table(project)
    r = run_cli(project, "quality", "--no-progress", "-S", "quality.workers=2")
    assert r.exit_code == 0, r.output
    assert "7 sets in 2 processes of 1 thread(s)" in r.output
    side = _table(project)
    assert list(side) == list(alone) == SETS
    assert side == alone
    assert min(side[n]["cas"] for n in GOOD) > side[JUNK]["cas"]  # still told apart
    figures = sorted(p.name for p in (project / "reports/quality/figures").iterdir())
    assert figures == sorted([f"closest_{n}.png" for n in SETS[:-1]] + ["fid_vs_cas.png"])


def test_a_missing_set_is_one_line_and_nothing_is_written(run_cli, project, tmp_path):
    import shutil

    copy = tmp_path / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("reports"))
    shutil.rmtree(copy / "data/synthetic/vae-jitter")
    r = run_cli(copy, "quality")
    one_line_error(r, "data/synthetic/vae-jitter", "synthaug sample vae-jitter")
    assert not (copy / "reports").exists()


def test_a_set_or_judge_of_an_older_train_split_is_refused(run_cli, project, tmp_path):
    """Issue 31, item 2: quality scored sets drawn from generators of another train split."""
    import shutil

    copy = tmp_path / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("reports"))
    meta_file = copy / "data/synthetic/vae-jitter/meta.json"
    meta = json.loads(meta_file.read_text())
    meta["generator_trained_on"]["content_hash"] = "0" * 64  # drawn before `prepare` reran
    meta_file.write_text(json.dumps(meta))
    one_line_error(run_cli(copy, "quality"), "data/synthetic/vae-jitter: stale, made from "
                   "another data/prepared/train", "`synthaug sample vae-jitter`")
    config_file = copy / "models/judge/config.json"
    config = json.loads(config_file.read_text())
    config["judge"]["trained_on"] = "0" * 64
    config_file.write_text(json.dumps(config))
    one_line_error(run_cli(copy, "quality"), "models/judge: stale", "rerun `synthaug judge`")
    assert not (copy / "reports").exists()
