"""`synthaug sweep`: nested real-per-class draws and re-composed synthetic ratios."""
import json

import numpy as np
import pytest
import yaml

from stages.params import load_params
from pipeline.data.storage import read_dataset, write_dataset


@pytest.fixture
def project(tmp_path, image_folder, run_cli, repo_root):
    image_folder(tmp_path / "images", classes=("a", "b"), per_class=30, size=(12, 12))
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["prepare"].update(source="folder:images", size=12, train_per_class=6,
                             val_fraction=0.2, test_fraction=0.2)
    params["train"].update(epochs=1, batch_size=8, epoch_size=0, patience=0)
    params["sweep"].update(models=["lenet5", "cnn"], real_per_class=[3, 6, 10], ratios=[0.5, 2.0],
                           seeds=[0, 1])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_cli(tmp_path, "prepare").exit_code == 0
    # a stand-in synthetic set for the ratio variant's part (diffusion-ddim): 20 per class
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 12, 12, 1), dtype=np.uint8)
    folder = tmp_path / "data/synthetic/diffusion-ddim"
    folder.mkdir(parents=True)
    write_dataset(folder, x, np.repeat([0, 1], 20), ["a", "b"])
    return tmp_path


def test_sweep_points_and_results(project, run_cli):
    from pipeline.evaluation.sweep import per_class, train_pool

    p = load_params(project / "params.yaml")
    pool = train_pool(p)
    train = read_dataset(project / "data/prepared/train", mmap=False)
    # k = prepare.train_per_class draws exactly the study's train split; smaller k nest inside
    six = per_class(pool, 6, p.prepare.seed)
    assert np.array_equal(pool.images[six], train.images)
    assert set(per_class(pool, 3, p.prepare.seed)) <= set(six) <= set(per_class(pool, 10, 0))

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
