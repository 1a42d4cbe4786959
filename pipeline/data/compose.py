"""Data set variants: the training sets the study compares, each image traceable.

A variant is a list of parts concatenated in that order: `real` (the prepared train split),
`classic` (the augment stage's copies) and synthetic sets (the sample stage's, by name), plus
optional on-the-fly augmentation that travels in its meta.json to the train stage.
Synthetic parts contribute a class-balanced share: `ratio` synthetic images per real training
image of that class, or `per_class` images per class, split evenly over the synthetic parts;
which images is decided by a seeded draw (`compose.seed`). With `gate: true` only images that
passed the quality gate are eligible. Every row of the manifest names the image's part and
carries that part's own provenance (origin, parent image, generator, sampler, seed...).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from synthaug.pipeline.data.config import MORE_REAL, REAL_DRAWN, REAL_PARTS, VariantConfig
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.storage import PackedDataset


@dataclass
class Variant:
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    provenance: list[dict]
    meta: dict


def synthetic_counts(cfg: VariantConfig, real_counts: np.ndarray) -> list[np.ndarray] | None:
    """Images per class each drawn part (synthetic set or more-real) contributes (None: all
    of each set's images)."""
    n = len(cfg.drawn_parts())
    if cfg.per_class is not None:
        total = np.full(len(real_counts), cfg.per_class)
    elif cfg.ratio is not None:
        total = np.rint(cfg.ratio * np.asarray(real_counts)).astype(int)
    else:
        return None
    # an even split; the first parts take the remainder
    return [total // n + (i < total % n) for i in range(n)]


def balanced_labels(num_classes: int, per_class: int) -> np.ndarray:
    """per_class labels of each class, class-major: [0, 0, ..., 1, 1, ...] (int64)."""
    return np.repeat(np.arange(num_classes, dtype=np.int64), per_class)


def pick(labels: np.ndarray, counts: np.ndarray, eligible: np.ndarray, seed: list[int],
         where: str, class_names: list[str]) -> np.ndarray:
    """Indices of counts[c] eligible images of each class c, drawn without replacement."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c, k in enumerate(counts):
        pool = np.flatnonzero((labels == c) & eligible)
        if len(pool) < k:
            raise SynthaugError(
                f"{where}: needs {k} images of class {class_names[c]!r} but the set has "
                f"{len(pool)}{' after the quality gate' if not eligible.all() else ''}; draw "
                "more (sample.per_class) or ask for fewer (ratio / per_class)")
        chosen.append(rng.choice(pool, size=int(k), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, int)


def _name_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def compose_variant(name: str, cfg: VariantConfig, parts: dict[str, PackedDataset],
                    seed: int = 0, eligible: dict[str, np.ndarray] | None = None) -> Variant:
    """Concatenate the parts of variant `name`.

    `parts` maps part name -> packed data set ("real" must be there: it fixes the classes,
    shape and, for `ratio`, the per-class counts). `eligible` maps a synthetic set's name to
    the mask of images that passed the quality gate (used when `cfg.gate`).
    """
    real = parts["real"]
    names = real.class_names
    real_counts = np.bincount(real.labels, minlength=len(names))
    counts = synthetic_counts(cfg, real_counts)
    if cfg.gate and cfg.synthetic_parts() and eligible is None:
        raise SynthaugError(f"compose.variants.{name}: gate is on but no gate was computed")
    images, labels, provenance, made_of = [], [], [], {}
    for part in cfg.parts:
        if part not in parts:
            raise SynthaugError(f"compose.variants.{name}: part {part!r} is not available")
        ds = parts[part]
        if ds.class_names != names or ds.shape != real.shape:
            raise SynthaugError(f"compose.variants.{name}: part {part!r} has classes/shape "
                                f"{ds.class_names}/{ds.shape}, the real split {names}/{real.shape}")
        part_labels = np.asarray(ds.labels)
        index = np.arange(len(ds))
        if part in cfg.drawn_parts():
            ok = (eligible[part] if cfg.gate and part not in REAL_DRAWN else np.ones(len(ds), bool))
            if counts is not None:
                k = counts[cfg.drawn_parts().index(part)]
                index = pick(part_labels, k, ok, [seed, _name_seed(f"{name}/{part}")],
                             f"compose.variants.{name}: part {part!r}", names)
            else:
                index = np.flatnonzero(ok)
        images.append(np.asarray(ds.images)[index])
        labels.append(part_labels[index])
        rows = ds.manifest if ds.manifest is not None else [{} for _ in range(len(ds))]
        provenance += [{"part": part, "part_index": int(i), **rows[i]} for i in index]
        made_of[part] = np.bincount(part_labels[index], minlength=len(names)).tolist()
    meta = {"variant": name, "kind": "variant", "parts": list(cfg.parts), "made_of": made_of,
            "ratio": cfg.ratio, "per_class": cfg.per_class, "gate": cfg.gate, "seed": seed,
            "online_augment": cfg.online_augment, "source": real.meta.get("source"),
            # the train split it was made from: train and evaluate refuse a stale variant
            "train_content_hash": real.meta.get("content_hash")}
    if not cfg.use.plain():  # how training uses the synthetic part (pipeline/classifiers/use.py)
        if cfg.use.replace_p > 0 and not any(r.get("parent") not in (None, "") for r in provenance):
            raise SynthaugError(f"compose.variants.{name}.use.replace_p: none of its parts has "
                                "images with a parent; use a posterior_jitter or img2img set")
        meta["use"] = cfg.use.model_dump()
    return Variant(np.concatenate(images), np.concatenate(labels), list(names), provenance, meta)


def makeup_table(variants: dict[str, Variant]) -> str:
    """Markdown table. Rows: variant; columns: images per part, total, synthetic share,
    quality gate, on-the-fly augmentation."""
    parts = sorted({p for v in variants.values() for p in v.meta["made_of"]},
                   key=lambda p: (p not in REAL_PARTS, p == MORE_REAL, p))
    head = ["variant", *parts, "total", "synthetic", "gate", "online_augment"]
    rows = []
    for name, v in variants.items():
        made = {p: sum(c) for p, c in v.meta["made_of"].items()}
        synth = sum(n for p, n in made.items() if p not in (*REAL_PARTS, MORE_REAL))
        rows.append([name, *(str(made.get(p, "")) for p in parts), str(len(v.labels)),
                     f"{synth / max(1, len(v.labels)):.0%}", "yes" if v.meta.get("gate") else "-",
                     _spec_name(v.meta["online_augment"])])
    return markdown_table(head, rows)


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    """A markdown table padded to be readable as plain text too."""
    width = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, width)) + " |"

    return "\n".join([line(head), line(["-" * w for w in width]), *map(line, rows)])


def _spec_name(spec) -> str:
    return "-" if spec is None else spec if isinstance(spec, str) else "custom"
