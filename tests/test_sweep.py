"""`synthaug sweep`: nested real-per-class draws and re-composed synthetic ratios."""
import json

import numpy as np
import pytest
import yaml

from synthaug.stages.params import load_params
from synthaug.pipeline.data.storage import write_dataset


@pytest.fixture
def project(tmp_path, image_folder, run_cli, repo_root):
    image_folder(tmp_path / "images", classes=("a", "b"), per_class=30, size=(12, 12))
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["prepare"].update(source="folder:images", size=12, train_per_class=6,
                             val_fraction=0.2, test_fraction=0.2)
    params["train"].update(epochs=1, batch_size=8, epoch_size=0, patience=0)
    params["sweep"].update(models=["lenet5", "cnn"], real_per_class=[3, 6, 10], ratios=[0.5, 2.0],
                           seeds=[0, 1], low_data_seeds=[0, 1],  # when points: tests/test_when.py
                           when_per_class=[])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_cli(tmp_path, "prepare").exit_code == 0
    # a stand-in synthetic set for the ratio variant's part (diffusion-ddim): 20 per class
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 12, 12, 1), dtype=np.uint8)
    folder = tmp_path / "data/synthetic/diffusion-ddim"
    folder.mkdir(parents=True)
    train = json.loads((tmp_path / "data/prepared/train/meta.json").read_text())["content_hash"]
    write_dataset(folder, x, np.repeat([0, 1], 20), ["a", "b"], meta={
        "kind": "synthetic", "generator": "diffusion", "generator_trained_on": {"content_hash": train}})
    return tmp_path


def old_train_pool(p):
    """How the sweep got its pool before prepare wrote it (frozen): reload the source and
    re-split it without train_per_class."""
    from synthaug.pipeline.data.prepare import prepare_splits
    from synthaug.pipeline.data.sources import load_source

    cfg = p.prepare.model_copy(update={"train_per_class": None})
    src = load_source(cfg, p.paths.raw, progress=False)
    split = prepare_splits(src, cfg)["train"]
    return split.lazy_images, split.labels, list(src.class_names)


def test_the_sweep_draws_the_images_it_drew_before(project):
    from synthaug.pipeline.data.prepare import subsample_per_class
    from synthaug.pipeline.experiments.sweep import Point, SweepData, per_class, pool_seed, training_set

    p = load_params(project / "params.yaml")
    data = SweepData.load(project / "data/prepared", project / "data/synthetic", [], pool=True)
    assert pool_seed(data.pool) == p.prepare.seed
    old_images, old_labels, names = old_train_pool(p)
    assert len(data.pool) == len(old_labels) == 2 * 18 and data.pool.class_names == names
    for k in (1, 3, 6, 10, 18):
        idx = subsample_per_class(np.arange(len(old_labels)), old_labels, k, p.prepare.seed, names)
        images, labels, variant = training_set(Point("real_per_class", k, 0), data, p.compose,
                                               p.sweep.ratio_variant)
        assert np.array_equal(images, old_images[idx]) and np.array_equal(labels, old_labels[idx])
        assert variant == "real" and images.dtype == np.uint8 and len(labels) == 2 * k
    # k = prepare.train_per_class draws exactly the study's train split; smaller k nest inside
    six = per_class(data.pool, 6, p.prepare.seed)
    assert np.array_equal(data.pool.images[six], data.real.images)
    assert set(per_class(data.pool, 3, p.prepare.seed)) <= set(six) <= set(per_class(data.pool, 10, 0))


def test_sweep_points_and_results(project, run_cli):
    import shutil

    shutil.rmtree(project / "images")  # the sweep reads prepare's pool, never the source
    r = run_cli(project, "sweep", "--model", "lenet5", "--no-progress")
    assert r.exit_code == 0, r.output
    rows = json.loads((project / "metrics/sweep/lenet5/results.json").read_text())["rows"]
    assert len(rows) == (3 + 2) * 2
    sizes = {(row["sweep"], row["value"]): row["train_images"] for row in rows}
    # real: k per class x 2 classes; ratio: 12 real + ratio x 12 synthetic
    assert sizes == {("real_per_class", 3): 6, ("real_per_class", 6): 12,
                     ("real_per_class", 10): 20, ("ratio", 0.5): 18, ("ratio", 2.0): 36}
    assert {row["seed"] for row in rows} == {0, 1}
    assert all(0.0 <= row["accuracy"] <= 1.0 and row["model"] == "lenet5" for row in rows)
    assert {row["variant"] for row in rows} == {"real", "real+diffusion"}

    for args, fragment in [(["--model", "resnet18"], "--model: 'resnet18' is not in sweep.models"),
                           (["-S", "sweep.ratio_variant=real"], "sweep.ratio_variant: 'real' must be"),
                           (["-S", "sweep.ratios=[8.0]"], "needs 48 images of class 'a' but the set has 20")]:
        r = run_cli(project, "sweep", "--model", "lenet5", *args)
        assert r.exit_code == 2 and fragment in r.output, r.output
        assert "seed 0:" not in r.output  # refused before training anything


def test_a_synthetic_set_of_an_older_train_split_is_refused(project, run_cli):
    """Issue 31, item 2: prepare again with another seed, then sweep on the old set."""
    from tests.conftest import one_line_error

    assert run_cli(project, "prepare", "-S", "prepare.seed=1").exit_code == 0
    one_line_error(run_cli(project, "sweep", "--no-progress", "-S", "sweep.real_per_class=[]"),
                   "data/synthetic/diffusion-ddim: stale, made from another data/prepared/train",
                   "rerun `synthaug train-generator diffusion`, then `synthaug sample diffusion-ddim`")
    assert not (project / "metrics/sweep").exists()
