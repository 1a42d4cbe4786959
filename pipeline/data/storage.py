"""The packed data set format.

A data set folder holds `images.npy` (uint8, N x H x W x C, memory-mappable), `labels.npy`
(int64, N), `manifest.csv` (one row per image: index, label, class name, provenance) and
`meta.json` (class names, counts, content hash, and whatever the writer adds). Images are
written and hashed chunk by chunk (`CHUNK_BYTES`), so a set may be a memory map larger than
memory; stages write data sets inside pipeline.core.outputs' atomic outputs. The space a mapped
file needs is reserved before the first write (`reserve`): a full disk is an OSError(ENOSPC)
there, not a SIGBUS later. `read_dataset` checks what it reads (dtype, shape, lengths, label
range, meta.json's keys and, where cheap, the content hash) and names the file that is wrong.
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

from synthaug.pipeline.core.csv_cells import csv_cell, csv_value
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.core.outputs import NO_SPACE

MANIFEST_BASE = ("index", "label", "class_name")
CHUNK_BYTES = 4 << 20  # pixels one chunked pass holds at a time: bounds its memory
# meta.json keys every packed set has (write_dataset writes them), with their JSON types
META_KEYS = {"class_names": list, "num_images": int, "shape": list, "counts": dict,
             "content_hash": str}
# memory-mapped sets up to this size get their content hash checked too (sha256 runs at about
# 1 GB/s: 5,000 28x28 images take 4 ms); loaded ones (mmap=False) always do
VERIFY_MMAP_BYTES = 256 << 20


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
    """sha256 of the shape, the pixels and the labels (int64), what meta.json records; chunk
    by chunk, so a memory map is never held whole."""
    h = hashlib.sha256(str(tuple(int(d) for d in images.shape)).encode())
    step = rows_per_chunk(images)
    for start in range(0, len(images), step):
        h.update(np.ascontiguousarray(images[start:start + step]))
        release(images)
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


def reserve(path: Path | str, need: int | None = None) -> None:
    """Allocate the blocks of file `path` (its whole size, or `need` bytes) now. Writes through a
    memory map that find the disk full kill the process with SIGBUS; this fails up front with
    an OSError(ENOSPC) naming the file and carrying `need` (bytes). A file system that cannot
    reserve (EINVAL, EOPNOTSUPP; macOS has no posix_fallocate) is left to the writes."""
    need = os.path.getsize(path) if need is None else need
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, need)
    except OSError as e:
        if e.errno not in NO_SPACE:
            return
        err = OSError(e.errno, os.strerror(e.errno), str(path))
        err.need = need  # read by outputs.atomic_output's message
        raise err from None


def scratch_array(shape: tuple[int, ...], folder: Path | str | None = None) -> np.memmap:
    """A uint8 array memory-mapped from a temporary file under `folder` (default: the system
    temp dir), for data larger than memory. The file's name is removed at once (POSIX): the map
    keeps the data until it is garbage collected, and nothing is left behind whatever happens
    next, a crash included."""
    fd, path = tempfile.mkstemp(prefix=".synthaug-scratch-", suffix=".npy", dir=folder)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        reserve(path)
        return out
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
    reserve(path)  # before the first write through the map
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
    names = [csv_cell(c) for c in class_names]
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([*MANIFEST_BASE, *map(csv_cell, extra)])
        for i, (label, row) in enumerate(zip(labels.tolist(), provenance)):
            w.writerow([i, label, names[label], *(csv_cell(row.get(k, "")) for k in extra)])
    counts = np.bincount(labels, minlength=len(class_names)).tolist()
    full = {  # the recorded facts win over `meta`: readers check them (check_dataset)
        **(meta or {}),
        "class_names": list(class_names),
        "num_images": int(len(labels)),
        "shape": list(shape[1:]),
        "counts": dict(zip(class_names, counts)),
        "content_hash": h.hexdigest(),
    }
    (folder / "meta.json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full


def _bad(path: Path, what: str) -> SynthaugError:
    return SynthaugError(f"{path}: {what}; not as synthaug wrote it (edited, truncated or from "
                         "elsewhere): rerun the stage that writes it (or `dvc repro`)")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None)  # allow_pickle=False: no objects
    except (ValueError, OSError, EOFError) as e:
        raise _bad(path, f"unreadable .npy file ({_first_line(e)})") from None


def read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except ValueError as e:  # not JSON, or not UTF-8
        raise _bad(path, f"not valid JSON ({_first_line(e)})") from None
    if not isinstance(meta, dict):
        raise _bad(path, "not a JSON object")
    for key, kind in META_KEYS.items():
        if key not in meta:
            raise _bad(path, f"no {key!r} key")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise _bad(path, f"{key!r} is {type(meta[key]).__name__}, not {kind.__name__}")
    if not all(isinstance(c, str) for c in meta["class_names"]) or not meta["class_names"]:
        raise _bad(path, "'class_names' must be a non-empty list of strings")
    return meta


def check_dataset(folder: Path, images: np.ndarray, labels: np.ndarray, meta: dict,
                  verify_hash: bool = True) -> None:
    """Raise a SynthaugError naming the file when the arrays are not a packed set that fits
    its meta.json: uint8 N x H x W x C (C 1 or 3), integer labels of the same length in range
    of class_names, shape, counts and (with `verify_hash`) content hash as recorded."""
    folder = Path(folder)
    im, lb, mt = folder / "images.npy", folder / "labels.npy", folder / "meta.json"
    if images.dtype != np.uint8:
        raise _bad(im, f"images are {images.dtype}, not uint8")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise _bad(im, f"shape {images.shape} is not N x H x W x C with C 1 or 3")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise _bad(lb, f"labels are {labels.dtype} of shape {labels.shape}, not N integers")
    if len(labels) != len(images):
        raise _bad(lb, f"{len(labels)} labels for {len(images)} images in images.npy")
    k = len(meta["class_names"])
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise _bad(lb, f"labels run from {labels.min()} to {labels.max()}, outside the {k} "
                       "classes of meta.json")
    if meta["num_images"] != len(images) or list(meta["shape"]) != list(images.shape[1:]):
        raise _bad(mt, f"records {meta['num_images']} images of {meta['shape']}, images.npy "
                       f"holds {len(images)} of {list(images.shape[1:])}")
    counts = np.bincount(labels.astype(np.int64, copy=False), minlength=k).tolist()
    counts = dict(zip(meta["class_names"], counts))
    if meta["counts"] != counts:
        raise _bad(mt, "'counts' does not match labels.npy")
    if verify_hash and content_hash(images, labels) != meta["content_hash"]:
        raise _bad(folder, "images.npy and labels.npy do not match meta.json's content_hash")


def read_dataset(folder: Path | str, mmap: bool = True, manifest: bool = False) -> PackedDataset:
    """The packed set in `folder`, checked (`check_dataset`; the content hash when loaded, or
    memory-mapped and at most VERIFY_MMAP_BYTES): anything wrong is a one-line SynthaugError
    naming the file."""
    folder = Path(folder)
    for name in ("images.npy", "labels.npy", "meta.json"):
        if not (folder / name).is_file():
            raise SynthaugError(f"{folder}: not a packed data set (missing {name}); "
                                "run `synthaug prepare` first?")
    meta = read_meta(folder / "meta.json")
    images = _load_npy(folder / "images.npy", mmap)
    labels = _load_npy(folder / "labels.npy", False)
    check_dataset(folder, images, labels, meta, not mmap or images.nbytes <= VERIFY_MMAP_BYTES)
    labels = labels.astype(np.int64, copy=False)
    rows = None
    if manifest and (folder / "manifest.csv").is_file():
        try:
            with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
                rows = [{csv_value(k): csv_value(v) for k, v in r.items()
                         if k not in MANIFEST_BASE} for r in csv.DictReader(f)]
        except (ValueError, csv.Error) as e:
            raise _bad(folder / "manifest.csv", f"unreadable ({_first_line(e)})") from None
        if len(rows) != len(labels):
            raise _bad(folder / "manifest.csv", f"{len(rows)} rows for {len(labels)} images")
    return PackedDataset(images, labels, meta["class_names"], meta, rows)


def is_dataset(folder: Path) -> bool:
    return (Path(folder) / "images.npy").is_file() and (Path(folder) / "meta.json").is_file()
