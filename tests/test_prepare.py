"""synthaug.pipeline.data.prepare and `synthaug prepare`: dedupe before splitting, stratified seeded splits,
k-per-class subsampling that never touches val/test, byte-identical reruns, atomic output."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from synthaug.pipeline.data.config import PrepareConfig
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.prepare import SPLITS, counts_table, prepare_splits, read_pool, split_meta
from synthaug.pipeline.data.sources import RawSource
from synthaug.pipeline.data.storage import image_hashes, read_dataset


def make_source(counts=(40, 80, 120, 160), seed=0) -> RawSource:
    rng = np.random.default_rng(seed)
    n = sum(counts)
    images = rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8)
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    return RawSource(images, labels, [f"c{i}" for i in range(len(counts))],
                     [f"t:{i}" for i in range(n)])


def all_hashes(splits):
    return {name: set(s.hashes) for name, s in splits.items()}


def test_split_sizes_stratified_and_disjoint():
    src = make_source()
    cfg = PrepareConfig(val_fraction=0.1, test_fraction=0.2, train_per_class=None)
    splits = prepare_splits(src, cfg)
    for c, n in enumerate((40, 80, 120, 160)):
        got = {name: int((s.labels == c).sum()) for name, s in splits.items()}
        assert abs(got["test"] - 0.2 * n) <= 1 and abs(got["val"] - 0.1 * n) <= 1, (c, got)
        assert sum(got.values()) == n
    h = all_hashes(splits)
    assert not (h["train"] & h["val"] or h["train"] & h["test"] or h["val"] & h["test"])
    for s in splits.values():  # stable order: ascending source index; hashes match images
        idx = [int(o.split(":")[1]) for o in s.origins]
        assert idx == sorted(idx) and s.hashes == image_hashes(s.images)
        assert np.array_equal(s.labels, src.labels[idx])


def test_duplicates_removed_before_split_never_leak():
    src = make_source((30, 30, 30))
    # copies inside a class and across classes (a label conflict), 3 copies of one image
    for dst, orig in ((5, 0), (6, 0), (40, 1), (70, 35), (89, 88)):
        src.images[dst] = src.images[orig]
    splits = prepare_splits(src, PrepareConfig(train_per_class=None))
    assert splits.duplicates_removed == 5
    assert sum(len(s.labels) for s in splits.values()) == 85
    every = [h for s in splits.values() for h in s.hashes]
    assert len(every) == len(set(every))  # each content exactly once, in one split
    kept = {o for s in splits.values() for o in s.origins}
    assert {"t:0", "t:1", "t:35", "t:88"} <= kept and not kept & {"t:5", "t:40", "t:70", "t:89"}
    assert [(c["kept"], c["dropped"]) for c in splits.label_conflicts] == [
        ("t:1", "t:40"), ("t:35", "t:70")]
    meta = split_meta(src, PrepareConfig(train_per_class=None), splits, "val")
    assert meta["duplicates_removed"] == 5 and meta["label_conflicts"] == 2


def test_seed_decides_the_split():
    src = make_source()
    a = prepare_splits(src, PrepareConfig(seed=1, train_per_class=None))
    b = prepare_splits(src, PrepareConfig(seed=1, train_per_class=None))
    c = prepare_splits(src, PrepareConfig(seed=2, train_per_class=None))
    assert all(a[n].origins == b[n].origins for n in SPLITS)
    assert a["test"].origins != c["test"].origins


def test_train_per_class_exact_k_and_val_test_untouched():
    src = make_source()
    full = prepare_splits(src, PrepareConfig(seed=3, train_per_class=None))
    five = prepare_splits(src, PrepareConfig(seed=3, train_per_class=5))
    ten = prepare_splits(src, PrepareConfig(seed=3, train_per_class=10))
    assert np.bincount(five["train"].labels).tolist() == [5] * 4
    assert np.bincount(ten["train"].labels).tolist() == [10] * 4
    for name in ("val", "test"):
        assert five[name].origins == full[name].origins == ten[name].origins
    assert set(five["train"].origins) <= set(ten["train"].origins) <= set(full["train"].origins)
    other = prepare_splits(src, PrepareConfig(seed=4, train_per_class=5))
    assert other["train"].origins != five["train"].origins


def test_pool_is_the_train_split_before_thinning():
    src = make_source()
    full = prepare_splits(src, PrepareConfig(seed=3, train_per_class=None))
    five = prepare_splits(src, PrepareConfig(seed=3, train_per_class=5))
    assert full.pool is None  # nothing thinned: train/ is the pool
    pool = five.pool
    assert np.array_equal(pool.rows, full["train"].rows) and pool.hashes == full["train"].hashes
    assert np.array_equal(pool.labels, full["train"].labels) and pool.origins == full["train"].origins
    assert set(five["train"].rows) <= set(pool.rows)


def test_train_per_class_too_large():
    with pytest.raises(SynthaugError, match=r"prepare\.train_per_class: 29 requested but "
                                            r"class 'c0' has only 28"):
        prepare_splits(make_source(), PrepareConfig(train_per_class=29))


def test_class_too_small_to_stratify():
    src = make_source((20, 2, 20))
    with pytest.raises(SynthaugError, match=r"class 'c1' has only 2 unique image"):
        prepare_splits(src, PrepareConfig(train_per_class=None))


def test_counts_table():
    src = make_source((40, 80))
    table = counts_table(prepare_splits(src, PrepareConfig(train_per_class=None)), src.class_names)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "train", "val", "test", "total"]
    assert lines[2].split() == ["c0", "28", "4", "8", "40"]
    assert lines[3].split() == ["c1", "56", "8", "16", "80"]
    assert lines[-1].split() == ["total", "84", "12", "24", "120"]


# ------------------------------------------------------------------ the stage command

def write_params(folder, **prepare):
    prepare = {"train_per_class": "null", **prepare}  # these tests split every image
    lines = ["prepare:"] + [f"  {k}: {v}" for k, v in prepare.items()]
    (folder / "params.yaml").write_text("\n".join(lines) + "\n")


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def source(image_folder, tmp_path):
    root = image_folder(tmp_path / "images", classes=("cat", "dog", "fox"), per_class=20,
                        size=(14, 10))
    # the same picture twice in one class and once in another: must not leak across splits
    for dst in ("cat/dup.png", "dog/dup.png"):
        (root / dst).write_bytes((root / "cat" / "img000.png").read_bytes())
    return root


def test_stage_byte_identical_in_two_dirs_and_seed_matters(run_cli, source, tmp_path):
    outs = []
    for name, seed in (("one", 7), ("two", 7), ("three", 8)):
        work = tmp_path / name
        work.mkdir()
        write_params(work, source=f"folder:{source}", size=12, resize="pad", seed=seed)
        r = run_cli(work, "prepare")
        assert r.exit_code == 0, r.output
        outs.append(files_of(work / "data" / "prepared"))
    assert outs[0] == outs[1]
    assert sorted(outs[0]) == [".synthaug-output", "preview.png"] + [f"{s}/{f}" for s in sorted(SPLITS) for f in
                                                 ("images.npy", "labels.npy", "manifest.csv",
                                                  "meta.json")]
    assert outs[0]["test/manifest.csv"] != outs[2]["test/manifest.csv"]
    assert "removed 2 duplicate image(s)" in r.output and "1 duplicate(s) carried a different" in r.output
    assert "total" in r.output and "cat" in r.output

    prepared = tmp_path / "one" / "data" / "prepared"
    sets = {s: read_dataset(prepared / s, manifest=True) for s in SPLITS}
    assert sum(len(d) for d in sets.values()) == 60
    assert sets["train"].images.shape[1:] == (12, 12, 1)
    sha = [row["sha1"] for d in sets.values() for row in d.manifest]
    assert len(sha) == len(set(sha)) == 60
    meta = sets["val"].meta
    assert meta["split"] == "val" and meta["prepare"]["seed"] == 7 and meta["duplicates_removed"] == 2
    text = json.dumps(meta) + (prepared / "train" / "manifest.csv").read_text()
    assert str(tmp_path / "one") not in text  # nothing tied to where it ran


def test_stage_skips_bad_images_and_reports(run_cli, source, tmp_path):
    (source / "fox" / "broken.png").write_text("not a png")
    write_params(tmp_path, source=f"folder:{source}", on_bad_image="skip")
    r = run_cli(tmp_path, "prepare")
    assert r.exit_code == 0, r.output
    assert "skipped 1 bad image file(s)" in r.output
    meta = read_dataset(tmp_path / "data" / "prepared" / "test").meta
    assert meta["bad_images_skipped"] == [{"path": "fox/broken.png", "reason": "not an image"}]


def test_stage_failure_writes_nothing(run_cli, source, tmp_path):
    write_params(tmp_path, source=f"folder:{source}")
    assert run_cli(tmp_path, "prepare").exit_code == 0
    before = files_of(tmp_path / "data")
    (source / "fox" / "broken.png").write_text("not a png")
    r = run_cli(tmp_path, "prepare", "-S", "prepare.seed=5")
    assert r.exit_code == 2 and "1 bad image file(s)" in r.stderr and "broken.png" in r.stderr
    assert files_of(tmp_path / "data") == before  # the previous output, untouched
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["prepared"]  # no temp leftovers


def test_stage_bad_param_exits_2_and_writes_nothing(run_cli, tmp_path):
    write_params(tmp_path, source="digits")
    r = run_cli(tmp_path, "prepare", "-S", "prepare.test_fraction=1.5")
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and "prepare.test_fraction" in r.stderr
    r = run_cli(tmp_path, "prepare", "-S", "prepare.sizee=3")
    assert r.exit_code == 2 and "prepare.sizee: unknown key" in r.stderr
    assert not (tmp_path / "data").exists()


def test_stage_digits_with_k_per_class(run_cli, tmp_path):
    write_params(tmp_path, source="digits", size=8, train_per_class=3)
    r = run_cli(tmp_path, "prepare")
    assert r.exit_code == 0, r.output
    train = read_dataset(tmp_path / "data" / "prepared" / "train")
    assert np.bincount(train.labels).tolist() == [3] * 10 and train.images.shape[1:] == (8, 8, 1)
    assert len(read_dataset(tmp_path / "data" / "prepared" / "test")) == 360
    # the whole train split is kept as pool/: what the sweep draws from (k = 3 is train/)
    from synthaug.pipeline.experiments.sweep import per_class, pool_seed

    pool = read_pool(tmp_path / "data" / "prepared")
    assert pool.meta["split"] == "pool" and len(pool) == 1797 - 360 - 180
    assert np.array_equal(pool.images[per_class(pool, 3, pool_seed(pool))], train.images)
    assert {row["sha1"] for row in read_dataset(tmp_path / "data/prepared/train", manifest=True).manifest} <= {
        row["sha1"] for row in read_dataset(tmp_path / "data/prepared/pool", manifest=True).manifest}
    # without a pool/, a thinned train split cannot stand in for it
    import shutil

    shutil.rmtree(tmp_path / "data" / "prepared" / "pool")
    with pytest.raises(SynthaugError, match="no pool/"):
        read_pool(tmp_path / "data" / "prepared")
    write_params(tmp_path, source="digits", size=8)  # nothing thinned: train/ is the pool
    assert run_cli(tmp_path, "prepare").exit_code == 0
    assert not (tmp_path / "data" / "prepared" / "pool").exists()
    assert len(read_pool(tmp_path / "data" / "prepared")) == 1797 - 360 - 180


def test_stage_rgb_pad_from_mixed_sizes(run_cli, tmp_path):
    root = tmp_path / "imgs"
    for c, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (root / c).mkdir(parents=True)
        for i in range(6):  # wide, tall and square pictures, all distinct
            Image.new("RGB", (20 + 7 * i, 30 - 3 * i), color).save(root / c / f"{i}.png")
    write_params(tmp_path, source=f"folder:{root}", channels=3, size=16, resize="pad",
                 background=128)
    assert run_cli(tmp_path, "prepare").exit_code == 0
    ds = read_dataset(tmp_path / "data" / "prepared" / "train")
    assert ds.images.shape[1:] == (16, 16, 3) and ds.class_names == ["blue", "red"]
    for im, label in zip(ds.images, ds.labels):
        want = (0, 0, 255) if label == 0 else (255, 0, 0)
        assert tuple(im[8, 8]) == want
        corners = im[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert ((corners == 128).all(axis=1) | (corners == want).all(axis=1)).all()
