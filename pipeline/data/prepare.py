"""Raw source -> deduplicated, stratified, seeded train/val/test splits.

Order of operations matters for honest numbers: duplicates are removed BEFORE splitting (else
one picture could sit in train and test), the split is stratified and seeded, and the
low-data subsample (`train_per_class`) only ever thins the train split, so val/test stay the
same whatever k is. Everything is deterministic in (source, params, seed): no timestamps, no
absolute paths, stable orders, so reruns write byte-identical files.
A split keeps row indices into the source's images, not a copy of them: a memory-mapped folder
source is hashed and written chunk by chunk (`storage.write_dataset(rows=...)`), never gathered.
When `train_per_class` thins the train split, the whole of it is kept too, as the `pool`
(`synthaug prepare` writes it next to train/ val/ test/): the sweep draws its real-only sets
from it, so no later stage reloads and re-splits the source (`read_pool`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthaug.pipeline.data.config import PrepareConfig
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.per_class import per_class_shortfall, resolve_train_per_class
from synthaug.pipeline.data.sources import RawSource
from synthaug.pipeline.data.storage import image_hashes

SPLITS = ("train", "val", "test")
POOL = "pool"  # the train split before train_per_class thinned it (written only when it did)
MAX_CONFLICTS = 100  # label conflicts listed in meta.json (the count is always complete)


@dataclass
class Split:
    source: np.ndarray  # the source's uint8 images (maybe a memmap); this split is source[rows]
    rows: np.ndarray  # int64 N, ascending indices into source: a stable order
    labels: np.ndarray  # int64 N
    origins: list[str]
    hashes: list[str]  # sha1 per image (storage.image_hashes)

    @property
    def images(self) -> np.ndarray:
        """This split's images (uint8 N x H x W x C), gathered into memory."""
        return np.asarray(self.source[self.rows])

    @property
    def lazy_images(self) -> Rows:
        """The images one index at a time, gathering nothing up front (e.g. for a preview)."""
        return Rows(self.source, self.rows)

    @property
    def provenance(self) -> list[dict]:
        """Manifest rows for storage.write_dataset."""
        return [{"origin": o, "sha1": h} for o, h in zip(self.origins, self.hashes)]


class Rows:
    """`source[rows]` indexed lazily: rows[i] is read from source only when asked for."""

    def __init__(self, source: np.ndarray, rows: np.ndarray):
        self.source, self.rows = source, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.source[self.rows[i]]


class Splits(dict):
    """{"train": Split, "val": Split, "test": Split} plus what deduplication found, and the
    `pool`: the train split before `train_per_class` thinned it (None when it did not)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool: Split | None = None
        self.duplicates_removed = 0
        self.label_conflicts: list[dict] = []
        self.train_per_class: int | None = None  # k as resolved (`auto` -> a number)
        self.train_per_class_why = ""  # one line: what k is and why


def dedupe(src: RawSource) -> tuple[np.ndarray, list[str], int, list[dict]]:
    """Keep the first copy of each identical image: (kept indices, their hashes, removed count,
    conflicts). A conflict is a copy whose label differs from the kept one's."""
    hashes = image_hashes(src.images)
    first: dict[str, int] = {}
    conflicts = []
    for i, h in enumerate(hashes):
        j = first.setdefault(h, i)
        if j != i and src.labels[i] != src.labels[j]:
            conflicts.append({"kept": src.origins[j], "kept_class": src.class_names[src.labels[j]],
                              "dropped": src.origins[i],
                              "dropped_class": src.class_names[src.labels[i]]})
    keep = np.array(sorted(first.values()), dtype=np.int64)
    return keep, [hashes[i] for i in keep], len(hashes) - len(keep), conflicts


def check_class_sizes(labels: np.ndarray, class_names: list[str]) -> None:
    counts = np.bincount(labels, minlength=len(class_names))
    for c in np.argsort(counts, kind="stable"):
        if counts[c] < 3:  # one image each for train, val and test at the very least
            raise SynthaugError(
                f"prepare: class {class_names[c]!r} has only {counts[c]} unique image(s); "
                "a stratified train/val/test split needs at least 3 per class")


def check_seed(cfg: PrepareConfig) -> None:
    """scikit-learn and numpy take seeds in [0, 2**32); say so under the seed's own name (a
    bad seed would otherwise surface as a splitting error that blames the fractions)."""
    if not 0 <= cfg.seed < 2**32:
        raise SynthaugError(f"prepare.seed: must be between 0 and {2**32 - 1} (got {cfg.seed})")


def split_indices(labels: np.ndarray, cfg: PrepareConfig) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    try:
        rest, test = train_test_split(idx, test_size=cfg.test_fraction, stratify=labels,
                                      random_state=cfg.seed)
        # val_fraction is of the whole set, so rescale it to the remainder
        train, val = train_test_split(rest, test_size=cfg.val_fraction / (1 - cfg.test_fraction),
                                      stratify=labels[rest], random_state=cfg.seed)
    except ValueError as e:
        raise SynthaugError(f"prepare.val_fraction/test_fraction: cannot split "
                            f"{len(labels)} images stratified by class ({e})") from None
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def subsample_per_class(train: np.ndarray, labels: np.ndarray, k: int, seed: int,
                        class_names: list[str]) -> np.ndarray:
    """k training indices per class. Each class takes a prefix of its own seeded permutation,
    so for one seed the k=5 set lies inside the k=10 set (clean low-data sweeps)."""
    rng = np.random.default_rng(seed)
    pools = [train[labels[train] == c] for c in range(len(class_names))]
    if problem := per_class_shortfall(k, [(n, len(p)) for n, p in zip(class_names, pools)]):
        raise SynthaugError(problem)
    return np.sort(np.concatenate([rng.permutation(pool)[:k] for pool in pools]))


def prepare_splits(src: RawSource, cfg: PrepareConfig) -> Splits:
    """Dedupe, split stratified by class (seeded), optionally keep k train images per class."""
    check_seed(cfg)
    keep, hashes, removed, conflicts = dedupe(src)
    labels = src.labels[keep]
    check_class_sizes(labels, src.class_names)
    parts = split_indices(labels, cfg)
    pool = None
    sizes = np.bincount(labels[parts["train"]], minlength=len(src.class_names))
    k, why = resolve_train_per_class(cfg.train_per_class,
                                     [(n, int(c)) for n, c in zip(src.class_names, sizes)])
    if k is not None:
        pool = parts["train"]
        parts["train"] = subsample_per_class(pool, labels, k, cfg.seed, src.class_names)

    def split(part: np.ndarray) -> Split:
        sel = keep[part]  # indices into the source, ascending: a stable order
        return Split(src.images, sel, src.labels[sel], [src.origins[i] for i in sel],
                     [hashes[i] for i in part])

    out = Splits({name: split(parts[name]) for name in SPLITS})
    out.pool = None if pool is None else split(pool)
    seen: dict[str, str] = {}
    for name in SPLITS:  # cheap guarantee against leakage, whatever changes above
        for h in out[name].hashes:
            if seen.setdefault(h, name) != name:
                raise AssertionError(f"image {h} in both {seen[h]} and {name}")
    out.duplicates_removed = removed
    out.label_conflicts = conflicts
    out.train_per_class, out.train_per_class_why = k, why
    return out


def split_meta(src: RawSource, cfg: PrepareConfig, splits: Splits, name: str) -> dict:
    """What meta.json records about how split `name` was made (no times, no absolute paths)."""
    return {
        "source": cfg.source,
        "split": name,
        "prepare": cfg.model_dump(mode="json"),  # the settings (train_per_class maybe `auto`)
        "train_per_class": {"setting": cfg.train_per_class, "k": splits.train_per_class,
                            "why": splits.train_per_class_why},
        "duplicates_removed": splits.duplicates_removed,
        "label_conflicts": len(splits.label_conflicts),
        "label_conflict_examples": splits.label_conflicts[:MAX_CONFLICTS],
        "bad_images_skipped": [{"path": p, "reason": r} for p, r in src.bad],
        "notes": list(src.notes),
    }


def prepare_record(prepared: Path | str) -> dict:
    """The `prepare` params the prepared data under `prepared` was made with, as its train
    split's meta.json records them: the one source of truth for the pool (train_per_class,
    seed, source, ...) that later stages read, whatever params.yaml says now.
    `train_per_class` is the k prepare used (`auto` resolved to a number, or None)."""
    from synthaug.pipeline.data.storage import is_dataset, read_meta

    folder = Path(prepared) / "train"
    if not is_dataset(folder):
        raise SynthaugError(f"{folder}: no prepared train split; run `synthaug prepare` (or "
                            "`dvc repro`) first")
    meta = read_meta(folder / "meta.json")
    record = meta.get("prepare")
    if not isinstance(record, dict) or not {"train_per_class", "seed"} <= set(record):
        raise SynthaugError(f"{folder / 'meta.json'}: no record of the prepare params (written "
                            "by an older synthaug or another tool); rerun `synthaug prepare`")
    resolved = meta.get("train_per_class")
    if isinstance(resolved, dict) and "k" in resolved:
        return {**record, "train_per_class": resolved["k"]}
    if record["train_per_class"] == "auto":
        raise SynthaugError(f"{folder / 'meta.json'}: train_per_class `auto` without the k it "
                            "chose; rerun `synthaug prepare`")
    return record


def read_pool(prepared: Path):
    """The train pool under `prepared` (memory-mapped): `pool/`, or `train/` itself when
    `train_per_class` thinned nothing. Draw from it as `prepare.train_per_class` does
    (`subsample_per_class`, with the seed its meta records) and k = train_per_class gives
    the train split exactly."""
    from synthaug.pipeline.data.storage import is_dataset, read_dataset

    if is_dataset(prepared / POOL):
        return read_dataset(prepared / POOL)
    train = read_dataset(prepared / "train")
    if prepare_record(prepared)["train_per_class"] is not None:
        raise SynthaugError(f"{prepared}: no {POOL}/ (the train split before "
                            "prepare.train_per_class thinned it): written by an older synthaug "
                            "or another tool; rerun `synthaug prepare`")
    return train


def held_out(pool, k: int, seed: int):
    """The train pool's images outside its k-per-class draw (the train split when k is
    prepare.train_per_class): the `more-real` part, a PackedDataset in pool order."""
    import numpy as np

    from synthaug.pipeline.data.storage import PackedDataset

    rest = np.setdiff1d(np.arange(len(pool)), subsample_per_class(
        np.arange(len(pool)), pool.labels, k, seed, pool.class_names))
    rows = [{"origin": "held-out real", "pool_index": int(i)} for i in rest]
    return PackedDataset(np.asarray(pool.images[rest]), np.asarray(pool.labels)[rest],
                         list(pool.class_names), {"kind": "more-real", "k": k}, rows)


def held_back_reference(prepared: Path, train, seed: int):
    """A real reference that no generator saw, for the quality stage: held-back train-pool
    images (outside the train split, never val or test), as many per class as `train` has
    where the pool holds them, drawn with `seed`; None without a pool."""
    import numpy as np

    from synthaug.pipeline.data.storage import PackedDataset, is_dataset

    if not is_dataset(prepared / POOL):
        return None
    rest = more_real(prepared)
    rng = np.random.default_rng(seed)
    want = np.bincount(train.labels, minlength=len(train.class_names))
    idx = np.sort(np.concatenate([
        rng.choice(pool, min(len(pool), int(n)), replace=False)
        for c, n in enumerate(want) if len(pool := np.flatnonzero(rest.labels == c))]))
    return PackedDataset(rest.images[idx], rest.labels[idx], list(rest.class_names),
                         {"kind": "reference"})


def more_real(prepared: Path):
    """The `more-real` part of the study: the pool outside the train split."""
    from synthaug.pipeline.data.storage import is_dataset

    if not is_dataset(prepared / POOL):
        raise SynthaugError(f"{prepared}: part 'more-real' needs the held-back train pool "
                            f"({POOL}/), which prepare writes only when prepare.train_per_class "
                            "thins the train split; set it to auto (or a k) or drop the part")
    record = prepare_record(prepared)
    return held_out(read_pool(prepared), int(record["train_per_class"]), int(record["seed"]))


def counts_table(splits: dict[str, Split], class_names: list[str]) -> str:
    """Images per class and split, with totals, as an aligned text table."""
    cols = [n for n in SPLITS if n in splits]
    counts = {n: np.bincount(splits[n].labels, minlength=len(class_names)) for n in cols}
    rows = [[c, *(str(counts[n][i]) for n in cols), str(sum(counts[n][i] for n in cols))]
            for i, c in enumerate(class_names)]
    rows.append(["total", *(str(len(splits[n].labels)) for n in cols),
                 str(sum(len(splits[n].labels) for n in cols))])
    head = ["class", *cols, "total"]
    width = [max(len(r[j]) for r in [head, *rows]) for j in range(len(head))]
    fmt = lambda r: "  ".join(v.ljust(w) if j == 0 else v.rjust(w)  # noqa: E731
                              for j, (v, w) in enumerate(zip(r, width)))
    rule = "  ".join("-" * w for w in width)
    return "\n".join([fmt(head), rule, *map(fmt, rows[:-1]), rule, fmt(rows[-1])])
