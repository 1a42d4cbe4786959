"""The packed data set format and atomic outputs.

A data set folder holds `images.npy` (uint8, N x H x W x C, memory-mappable), `labels.npy`
(int64, N), `manifest.csv` (one row per image: index, label, class name, provenance) and
`meta.json` (class names, counts, content hash, and whatever the writer adds).
Stages write into a temporary sibling folder and rename it into place when done, so a crash
leaves the previous output or nothing, never half an output; an existing folder is replaced
only if a synthaug stage wrote it, and leftovers of killed runs are cleared at the next run.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import mmap
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

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


# ---------------------------------------------------------------- atomic outputs

MARKER = ".synthaug-output"  # in an output folder: "a synthaug stage wrote this; replace it"
MARKERS = (MARKER, ".synthaug-export")  # the second: exports written before MARKER existed
# constant text, so reruns stay byte-identical; a copy restored from the DVC cache carries it
MARKER_TEXT = "written by synthaug; a rerun replaces this folder\n"
# leftovers of killed runs: .NAME.tmp-PID-XXXX (.NAME.tmp-XXXX before PIDs) and .NAME.old-PID
DEBRIS = re.compile(r"\.(?P<name>.+)\.(?:tmp-(?P<tmp>\d+)-\w+|tmp-\w+|old-(?P<old>\d+))")
LEGACY_STALE_S = 24 * 3600  # a leftover without a PID counts as stale after a day


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # someone else's live process
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


def remove_stale(path: Path) -> list[Path]:
    """Remove the temporary and old siblings of `path` that killed runs left behind: those
    whose PID is not alive on this machine (or, without a PID, older than a day). A live
    run's siblings are kept. Returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for e in path.parent.iterdir():
            m = DEBRIS.fullmatch(e.name)
            if not m or m["name"] != path.name:
                continue
            pid = m["tmp"] or m["old"]
            if pid is not None and _alive(int(pid)):
                continue
            if pid is None and time.time() - e.lstat().st_mtime < LEGACY_STALE_S:
                continue
            if m["old"] and not (path.exists() or path.is_symlink()):
                os.replace(e, path)  # killed between the two renames: the previous output
                continue  # was complete, so it comes back
            shutil.rmtree(e, ignore_errors=True) if e.is_dir() and not e.is_symlink() else \
                e.unlink(missing_ok=True)
            removed.append(e)
    return removed


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError):  # Linux: read it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(target: Path) -> None:
    """Give `target` and everything under it the modes a plain mkdir/open would: mkdtemp
    makes 0700 folders and safetensors 0600 files, which a shared group could not read."""
    mask = _umask()
    paths = [target]
    if target.is_dir():
        paths += [Path(d) / n for d, dirs, files in os.walk(target) for n in dirs + files]
    for p in paths:
        with contextlib.suppress(OSError):
            st = p.lstat()
            if stat.S_ISDIR(st.st_mode):
                os.chmod(p, 0o777 & ~mask)
            elif stat.S_ISREG(st.st_mode):  # keep execute bits where they were set
                os.chmod(p, (0o666 | st.st_mode & 0o111) & ~mask)


def _foreign(old: Path, new: Path) -> Path | None:
    """The first entry of existing folder `old` that no synthaug stage wrote, judged against
    the new output `new`; None when `old` may be replaced. Ours: a folder with a marker, a
    packed data set, and entries the new output also has (files: the same name or type)."""
    if any((old / m).is_file() for m in MARKERS) or is_dataset(old):
        return None
    kinds = {p.suffix for p in new.iterdir() if p.suffix and p.is_file()} if new.is_dir() else set()
    for e in sorted(old.iterdir()):
        twin = new / e.name
        if e.is_dir() and not e.is_symlink():
            if is_dataset(e):
                continue
            if twin.is_dir() and (bad := _foreign(e, twin)) is None:
                continue
            return bad if twin.is_dir() else e
        if twin.is_file() or e.suffix in kinds:  # files and links (links: only the link goes)
            continue
        return e
    return None


def _refuse(path: Path, what: str) -> SynthaugError:
    return SynthaugError(f"{path}: not replaced: {what}, which no synthaug stage wrote (no "
                         f"{MARKER} file); move it away or choose another output path")


def _check_replaceable(path: Path, is_dir: bool, new: Path | None = None) -> None:
    """Refuse to replace a user's file or folder. Before the work (`new` None) only what is
    certain; after it, the full check against the new output."""
    if path.is_symlink() or not path.exists():
        return  # nothing, or a link: replacing it leaves its target alone
    if not path.is_dir():
        if is_dir:
            raise _refuse(path, "it is a file")
        return  # a file output replaces the file of the same name: that is its job
    if not any(path.iterdir()):
        return
    if not is_dir:
        raise _refuse(path, "it is a folder that is not empty")
    if new is not None and (bad := _foreign(path, new)) is not None:
        raise _refuse(path, f"it holds {bad.relative_to(path).as_posix()}")


@contextlib.contextmanager
def atomic_output(path: Path | str, is_dir: bool = True, marker: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, else vanishes.

    For a folder the caller fills the yielded folder (with `marker`, a MARKER file is added);
    for a file (is_dir=False) it writes the yielded file path. An existing `path` is replaced
    only if a synthaug stage wrote it (see `_foreign`) or it is empty: a foreign folder is
    refused with a SynthaugError and kept. Leftovers of killed runs are removed first, and
    the output gets the modes the umask gives.
    """
    path = Path(path)
    _check_replaceable(path, is_dir)  # early: before any work
    made = [d for d in path.parents if not d.exists()]  # nearest first
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    target = tmp if is_dir else tmp / path.name
    try:
        yield target
        if is_dir and marker:
            (tmp / MARKER).write_text(MARKER_TEXT)
        _check_replaceable(path, is_dir, target)
        follow_umask(target)
        old = None
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(target, path)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in made:  # folders made only for this output: a failed run leaves none behind
            with contextlib.suppress(OSError):  # (not if something else has moved in since)
                d.rmdir()
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
