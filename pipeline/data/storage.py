"""The packed data set format.

A data set folder holds `images.npy` (uint8, N x H x W x C, memory-mappable), `labels.npy`
(int64, N), `manifest.csv` (one row per image: index, label, class name, provenance) and
`meta.json` (class names, counts, content hash, and whatever the writer adds). Images are
written and hashed chunk by chunk (`CHUNK_BYTES`), so a set may be a memory map larger than
memory; stages write data sets inside pipeline.data.outputs' atomic outputs.
"""
from __future__ import annotations

import csv
import hashlib
import json
import mmap
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.core.errors import SynthaugError

MANIFEST_BASE = ("index", "label", "class_name")
CHUNK_BYTES = 4 << 20  # pixels one chunked pass holds at a time: bounds its memory


@dataclass
class PackedDataset:
    images: np.ndarray  # uint8 N x H x W x C
    labels: np.ndarray  # int64 N
    class_names: list[str]
    meta: dict = field(default_factory=dict)
    manifest: list[dict] | None = None  # rows without the base columns; None when not loaded

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W), the order torch models take."""
        _, h, w, c = self.images.shape
        return (c, h, w)


def content_hash(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def rows_per_chunk(images: np.ndarray) -> int:
    row = int(np.prod(images.shape[1:], dtype=np.int64)) * images.dtype.itemsize
    return max(1, CHUNK_BYTES // max(1, row))


def release(images: np.ndarray) -> None:
    """Drop a memory map's pages from this process's resident set; they stay in the file and
    the page cache, and come back on the next access. Every page a pass touches through a map
    counts in RSS until the map closes, so without this a pass over a memory map looks like
    (and, under a container's memory limit, is charged as) the whole file in memory."""
    mm = getattr(images, "_mmap", None)  # np.memmap's own mmap.mmap (None on plain arrays)
    # never on copy-on-write maps (mode "c"): dropping their pages would discard the changes
    if mm is not None and getattr(images, "mode", "c") != "c" and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def scratch_array(shape: tuple[int, ...], folder: Path | str | None = None) -> np.memmap:
    """A uint8 array memory-mapped from a temporary file under `folder` (default: the system
    temp dir), for data larger than memory. The file's name is removed at once (POSIX): the map
    keeps the data until it is garbage collected, and nothing is left behind whatever happens
    next, a crash included."""
    fd, path = tempfile.mkstemp(prefix=".synthaug-scratch-", suffix=".npy", dir=folder)
    os.close(fd)
    try:
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    finally:
        os.unlink(path)


def image_hashes(images: np.ndarray) -> list[str]:
    """Per-image content hash (shape + pixels), used for leakage and duplicate checks."""
    out = []
    step = rows_per_chunk(images)
    for start in range(0, len(images), step):
        block = np.ascontiguousarray(images[start:start + step])
        prefix = str(block.shape[1:]).encode()
        out += [hashlib.sha1(prefix + im.tobytes()).hexdigest() for im in block]
        release(images)
    return out


def _write_images(path: Path, images: np.ndarray, rows: np.ndarray | None,
                  shape: tuple[int, ...], h) -> None:
    """images (or images[rows]) -> `path`, the same bytes np.save writes, one chunk at a time;
    feeds the pixels to hasher `h` on the way."""
    if shape[0] == 0:  # an empty file cannot be memory-mapped
        np.save(path, np.zeros(shape, np.uint8))
        return
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    step = rows_per_chunk(out)
    for start in range(0, shape[0], step):
        sel = slice(start, start + step) if rows is None else rows[start:start + step]
        block = np.ascontiguousarray(images[sel], dtype=np.uint8)
        out[start:start + len(block)] = block
        h.update(block)
        release(out)
        release(images)
    del out  # unmapped: the bytes are in the file (through the page cache, as with np.save)


def write_dataset(folder: Path, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                  provenance: Sequence[dict] | None = None, meta: dict | None = None,
                  rows: np.ndarray | None = None) -> dict:
    """Write a packed data set into `folder` (which must exist); returns the meta written.

    With `rows`, the data set is images[rows] (`labels` and `provenance` are already those
    rows'). Images are gathered and written chunk by chunk, so `images` may be a memory map
    larger than memory.
    """
    images = images if isinstance(images, np.ndarray) else np.asarray(images)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    rows = None if rows is None else np.asarray(rows, dtype=np.int64)
    n = len(images) if rows is None else len(rows)
    if images.ndim != 4 or n != len(labels):
        raise ValueError(f"images must be N x H x W x C matching labels, got {images.shape} "
                         f"and {labels.shape}")
    folder = Path(folder)
    shape = (n, *(int(d) for d in images.shape[1:]))  # python ints: the .npy header and hash
    h = hashlib.sha256(str(shape).encode())  # content_hash, computed as the pixels go by
    _write_images(folder / "images.npy", images, rows, shape, h)
    h.update(labels.tobytes())
    np.save(folder / "labels.npy", labels)
    provenance = list(provenance) if provenance is not None else [{} for _ in labels]
    extra = sorted({k for row in provenance for k in row})
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([*MANIFEST_BASE, *extra])
        for i, (label, row) in enumerate(zip(labels.tolist(), provenance)):
            w.writerow([i, label, class_names[label], *(row.get(k, "") for k in extra)])
    counts = np.bincount(labels, minlength=len(class_names)).tolist()
    full = {
        "class_names": list(class_names),
        "num_images": int(len(labels)),
        "shape": list(shape[1:]),
        "counts": dict(zip(class_names, counts)),
        "content_hash": h.hexdigest(),
        **(meta or {}),
    }
    (folder / "meta.json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full


def read_dataset(folder: Path | str, mmap: bool = True, manifest: bool = False) -> PackedDataset:
    folder = Path(folder)
    for name in ("images.npy", "labels.npy", "meta.json"):
        if not (folder / name).is_file():
            raise SynthaugError(f"{folder}: not a packed data set (missing {name}); "
                                "run `synthaug prepare` first?")
    meta = json.loads((folder / "meta.json").read_text())
    images = np.load(folder / "images.npy", mmap_mode="r" if mmap else None)
    labels = np.load(folder / "labels.npy")
    rows = None
    if manifest and (folder / "manifest.csv").is_file():
        with open(folder / "manifest.csv", newline="") as f:
            rows = [{k: v for k, v in r.items() if k not in MANIFEST_BASE} for r in csv.DictReader(f)]
    return PackedDataset(images, labels, meta["class_names"], meta, rows)


def is_dataset(folder: Path) -> bool:
    return (Path(folder) / "images.npy").is_file() and (Path(folder) / "meta.json").is_file()
