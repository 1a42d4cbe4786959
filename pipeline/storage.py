"""The packed data set format and atomic outputs.

A data set folder holds `images.npy` (uint8, N x H x W x C, memory-mappable), `labels.npy`
(int64, N), `manifest.csv` (one row per image: index, label, class name, provenance) and
`meta.json` (class names, counts, content hash, and whatever the writer adds).
Stages write into a temporary sibling folder and rename it into place when done, so a crash
leaves the previous output or nothing, never half an output.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from pipeline.errors import SynthaugError

MANIFEST_BASE = ("index", "label", "class_name")


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


def image_hashes(images: np.ndarray) -> list[str]:
    """Per-image content hash (shape + pixels), used for leakage and duplicate checks."""
    return [hashlib.sha1(str(im.shape).encode() + np.ascontiguousarray(im).tobytes()).hexdigest()
            for im in images]


def write_dataset(folder: Path, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                  provenance: Sequence[dict] | None = None, meta: dict | None = None) -> dict:
    """Write a packed data set into `folder` (which must exist); returns the meta written."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"images must be N x H x W x C matching labels, got {images.shape} "
                         f"and {labels.shape}")
    folder = Path(folder)
    np.save(folder / "images.npy", images)
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
        "shape": list(images.shape[1:]),
        "counts": dict(zip(class_names, counts)),
        "content_hash": content_hash(images, labels),
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


@contextlib.contextmanager
def atomic_output(path: Path | str, is_dir: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, else vanishes.

    For a folder the caller fills the yielded folder; for a file (is_dir=False) it writes the
    yielded file path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    target = tmp if is_dir else tmp / path.name
    try:
        yield target
        old = None
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(target, path)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
