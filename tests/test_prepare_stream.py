"""Folder sources larger than memory: decoded in one pass into a memory-mapped scratch file,
split and written chunk by chunk. Memory stays bounded, skipped files leave no holes, the
scratch file never outlives the run, and the output is byte for byte the in-memory path's."""
from __future__ import annotations

import hashlib
import json
import sys
import tracemalloc

import numpy as np
import pytest
from PIL import Image

import synthaug.pipeline.data.storage as storage
from synthaug.pipeline.data.config import PrepareConfig
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.prepare import SPLITS, prepare_splits
from synthaug.pipeline.data.sources import load_source, read_image
from synthaug.pipeline.data.storage import content_hash, scratch_array, write_dataset


def rgb_folder(root, classes=("a", "b", "c", "d"), per_class=10, size=32, seed=0):
    """Random RGB PNGs, one sub-folder per class; every image distinct."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            px = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(px).save(root / c / f"{i:04d}.png", compress_level=1)
    return root


def cfg_for(root, size=32, **kw):
    return PrepareConfig(source=f"folder:{root}", channels=3, size=size, train_per_class=None,
                         **kw)


def write_splits(src, splits, out):
    for name in SPLITS:
        s = splits[name]
        (out / name).mkdir(parents=True)
        write_dataset(out / name, s.source, s.labels, src.class_names, s.provenance, rows=s.rows)


def test_folder_prepare_memory_is_bounded(tmp_path, monkeypatch):
    import sklearn.model_selection  # noqa: F401  (imported up front: module objects are not data)
    import tqdm  # noqa: F401

    root = rgb_folder(tmp_path / "imgs", per_class=300, size=64)
    data = 1200 * 64 * 64 * 3  # 14.7 MB of pixels
    monkeypatch.setattr(storage, "CHUNK_BYTES", 256 << 10)  # many chunks: the bound is visible
    cfg = cfg_for(root, size=64)
    tracemalloc.start()  # numpy's buffers are traced; pages of a memory map are not
    try:
        src = load_source(cfg, tmp_path, progress=False, scratch=tmp_path)
        splits = prepare_splits(src, cfg)
        write_splits(src, splits, tmp_path / "out")
        streaming = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        # control: the in-memory way (a list of decoded images, then np.stack) is traced in full
        files = sorted(root.rglob("*.png"))
        stacked = np.stack([read_image(f, cfg) for f in files])
        in_memory = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stacked.nbytes == data and in_memory > 1.5 * data
    # what remains is per-image bookkeeping (paths, origins, hashes: ~0.6 KB an image) + a chunk
    assert streaming < data / 8, (streaming, data)
    assert sum(json.loads((tmp_path / "out" / n / "meta.json").read_text())["num_images"]
               for n in SPLITS) == 1200
    assert list(tmp_path.glob(".synthaug-scratch-*")) == []


def test_skipped_bad_files_leave_no_holes(tmp_path, monkeypatch):
    root = rgb_folder(tmp_path / "imgs", classes=("a", "b"), per_class=8)
    for c, name in (("a", "0003x.png"), ("a", "0007x.png"), ("b", "0000x.png")):
        (root / c / name).write_text("not a picture")  # between good files, in both classes
    monkeypatch.setattr(storage, "CHUNK_BYTES", 3 * 32 * 32 * 3)  # release every 3 rows
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    src = load_source(cfg_for(root, on_bad_image="skip"), tmp_path, progress=False,
                      scratch=scratch)
    good = [p for p in sorted(root.rglob("*.png")) if not p.stem.endswith("x")]
    assert len(src.bad) == 3 and len(src.origins) == len(src.labels) == len(src.images) == 16
    assert src.origins == [p.relative_to(root).as_posix() for p in good]
    assert np.array_equal(src.images, np.stack([read_image(p, cfg_for(root)) for p in good]))
    assert src.labels.tolist() == [0] * 8 + [1] * 8
    assert list(scratch.iterdir()) == []  # the data lives on in the map, the file name is gone


def test_scratch_file_removed_on_error(tmp_path, monkeypatch):
    root = rgb_folder(tmp_path / "imgs", classes=("a", "b"), per_class=4)
    (root / "b" / "broken.png").write_text("not a picture")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(SynthaugError, match=r"1 bad image file\(s\)"):
        load_source(cfg_for(root), tmp_path, progress=False, scratch=scratch)
    assert list(scratch.iterdir()) == []

    import synthaug.pipeline.data.sources as sources

    calls = []

    def dies(path, cfg, *rest):  # a crash in the middle of decoding, not a bad file
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return read_image(path, cfg, *rest)

    monkeypatch.setattr(sources, "read_image", dies)
    with pytest.raises(KeyboardInterrupt):
        load_source(cfg_for(root), tmp_path, progress=False, scratch=scratch)
    assert list(scratch.iterdir()) == []


def test_chunked_writer_is_byte_identical_to_np_save(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (50, 5, 7, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, 50)
    rows = np.sort(rng.choice(50, 23, replace=False))
    mapped = scratch_array(images.shape, tmp_path)
    mapped[:] = images
    monkeypatch.setattr(storage, "CHUNK_BYTES", 4 * 5 * 7 * 3)  # 4 rows a chunk, the last short
    for name, src, sel in (("mem", images, None), ("map", mapped, None), ("rows", mapped, rows),
                           ("empty", images, rows[:0])):
        want = images if sel is None else images[sel]
        want_labels = labels if sel is None else labels[sel]
        (tmp_path / name).mkdir()
        meta = write_dataset(tmp_path / name, src, want_labels, list("wxyz"), rows=sel)
        (tmp_path / "ref").mkdir(exist_ok=True)
        np.save(tmp_path / "ref" / "images.npy", want)  # what write_dataset used to do
        got = (tmp_path / name / "images.npy").read_bytes()
        assert got == (tmp_path / "ref" / "images.npy").read_bytes(), name
        assert meta["content_hash"] == content_hash(want, want_labels), name
        assert meta["shape"] == [5, 7, 3] and meta["num_images"] == len(want)


def test_stage_output_same_for_memory_and_folder_source(tmp_path):
    """The streaming folder path and the in-memory path write the same split files."""
    root = rgb_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=12)
    cfg = cfg_for(root)
    src = load_source(cfg, tmp_path, progress=False, scratch=tmp_path)
    assert isinstance(src.images, np.memmap)
    write_splits(src, prepare_splits(src, cfg), tmp_path / "stream")
    src.images = np.array(src.images)  # the same source, held in memory
    write_splits(src, prepare_splits(src, cfg), tmp_path / "memory")
    for name in SPLITS:
        for f in ("images.npy", "labels.npy", "manifest.csv", "meta.json"):
            a = (tmp_path / "stream" / name / f).read_bytes()
            assert a == (tmp_path / "memory" / name / f).read_bytes(), (name, f)
    meta = json.loads((tmp_path / "stream" / "test" / "meta.json").read_text())
    ims = np.load(tmp_path / "stream" / "test" / "images.npy")
    labels = np.load(tmp_path / "stream" / "test" / "labels.npy")
    h = hashlib.sha256(str(ims.shape).encode() + ims.tobytes() + labels.tobytes())
    assert meta["content_hash"] == h.hexdigest()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_release_keeps_mapped_pages_out_of_rss(tmp_path):
    def rss() -> int:  # bytes resident now, file-backed pages of memory maps included
        status = open("/proc/self/status").read()
        return int(status.split("VmRSS:")[1].split()[0]) * 1024

    size = 64 << 20
    for release, bound in ((True, lambda grew: grew < size / 4),
                           (False, lambda grew: grew > size / 2)):  # control: pages pile up
        a = scratch_array((size // 4096, 4096), tmp_path)
        before = rss()
        for start in range(0, len(a), 1024):  # 4 MB at a time
            a[start:start + 1024] = 7
            if release:
                storage.release(a)
        grew = rss() - before
        assert bound(grew), (release, grew)
        assert (a[::997] == 7).all()  # released pages come back from the file intact
        del a


def test_sweep_pool_gathers_only_the_drawn_rows(tmp_path, run_cli):
    """prepare writes the whole train split as pool/ when train_per_class thins it; the sweep
    reads it memory-mapped, and a real_per_class point gathers its k images per class, the
    same ones the in-memory split gives."""
    import yaml

    from synthaug.pipeline.data.prepare import read_pool
    from synthaug.pipeline.experiments.sweep import per_class, pool_seed

    root = rgb_folder(tmp_path / "imgs", per_class=300, size=64)
    data = 1200 * 64 * 64 * 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"prepare": {
        "source": "folder:imgs", "channels": 3, "size": 64, "train_per_class": 10}}))
    r = run_cli(tmp_path, "prepare")
    assert r.exit_code == 0, r.output
    tracemalloc.start()
    try:
        pool = read_pool(tmp_path / "data/prepared")
        idx = per_class(pool, 5, pool_seed(pool))
        picked = pool.images[idx]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(pool.images, np.memmap)
    assert picked.shape == (20, 64, 64, 3) and peak < data / 8, (peak, data)
    cfg = cfg_for(root, size=64)
    whole = prepare_splits(load_source(cfg, tmp_path, progress=False), cfg)["train"]
    assert np.array_equal(picked, whole.images[idx]) and len(pool) == len(whole.labels)
