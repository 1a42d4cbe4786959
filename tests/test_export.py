"""`synthaug export`: packed data sets -> PNG class folders that read back to the same arrays."""
from __future__ import annotations

import numpy as np
from PIL import Image

from synthaug.pipeline.data.storage import read_dataset, write_dataset


def pngs(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


def test_export_prepared_splits_round_trip(run_cli, tmp_path):
    (tmp_path / "params.yaml").write_text("prepare:\n  source: digits\n  size: 8\n  train_per_class: null\n")
    assert run_cli(tmp_path, "prepare").exit_code == 0
    r = run_cli(tmp_path, "export", "data/prepared", "--to", "pictures")
    assert r.exit_code == 0, r.output
    assert "wrote 1797 PNG files under pictures" in r.output
    out = tmp_path / "pictures"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["test", "train", "val"]
    for split in ("train", "val", "test"):
        ds = read_dataset(tmp_path / "data" / "prepared" / split)
        files = pngs(out / split)
        assert len(files) == len(ds)
        for i in (0, len(ds) // 2, len(ds) - 1):
            name = f"{ds.class_names[ds.labels[i]]}/{i:05d}.png"
            assert name in files
            back = np.asarray(Image.open(out / split / name))
            assert np.array_equal(back, ds.images[i][:, :, 0])
        for c in ds.class_names:
            assert len(list((out / split / c).glob("*.png"))) == int((ds.labels ==
                                                                     ds.class_names.index(c)).sum())
    # an earlier export may be replaced
    assert run_cli(tmp_path, "export", "data/prepared/val", "--to", "pictures").exit_code == 0
    assert len(pngs(out)) == 180 and not (out / "train").exists()


def test_export_single_rgb_set_with_awkward_class_names(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4, 3), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0, 2, 2, 2])
    folder = tmp_path / "set"
    folder.mkdir()
    write_dataset(folder, images, labels, ["T-shirt/top", "..", "ok"])
    r = run_cli(tmp_path, "export", "set", "--to", "out")
    assert r.exit_code == 0, r.output
    assert pngs(tmp_path / "out") == ["T-shirt_top/00000.png", "T-shirt_top/00003.png",
                                      "class_1/00001.png", "class_1/00002.png",
                                      "ok/00004.png", "ok/00005.png", "ok/00006.png"]
    back = np.asarray(Image.open(tmp_path / "out" / "ok" / "00005.png"))
    assert back.shape == (5, 4, 3) and np.array_equal(back, images[5])


def test_export_rejects_non_dataset_and_foreign_target(run_cli, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    r = run_cli(tmp_path, "export", "junk", "--to", "out")
    assert r.exit_code == 2 and "junk: not a packed data set" in r.stderr
    assert not (tmp_path / "out").exists()

    folder = tmp_path / "set"
    folder.mkdir()
    write_dataset(folder, np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 1]), ["a", "b"])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me")
    r = run_cli(tmp_path, "export", "set", "--to", "mine")
    assert r.exit_code == 2 and "not an earlier export" in r.stderr
    assert [p.name for p in mine.iterdir()] == ["precious.txt"]
