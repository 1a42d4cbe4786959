"""Data set variants: the training sets the study compares, each image traceable.

A variant is a list of parts (`real`: the prepared train split; `classic`: the augment stage's
copies) concatenated in that order, plus optional on-the-fly augmentation that travels in its
meta.json to the train stage. Every row of its manifest says which part the image came from
and carries that part's own provenance (origin, parent image, seed...).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import VariantConfig
from pipeline.errors import SynthaugError
from pipeline.storage import PackedDataset


@dataclass
class Variant:
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    provenance: list[dict]
    meta: dict


def compose_variant(name: str, cfg: VariantConfig, parts: dict[str, PackedDataset]) -> Variant:
    """Concatenate the parts of variant `name`; `parts` maps part name -> packed data set."""
    real = parts["real"]
    images, labels, provenance, made_of = [], [], [], {}
    for part in cfg.parts:
        if part not in parts:
            raise SynthaugError(f"compose.variants.{name}: part {part!r} is not available")
        ds = parts[part]
        if ds.class_names != real.class_names or ds.shape != real.shape:
            raise SynthaugError(f"compose.variants.{name}: part {part!r} has classes/shape "
                                f"{ds.class_names}/{ds.shape}, the real split "
                                f"{real.class_names}/{real.shape}")
        images.append(np.asarray(ds.images))
        labels.append(np.asarray(ds.labels))
        rows = ds.manifest if ds.manifest is not None else [{} for _ in range(len(ds))]
        provenance += [{"part": part, "part_index": i, **row} for i, row in enumerate(rows)]
        made_of[part] = np.bincount(ds.labels, minlength=len(real.class_names)).tolist()
    meta = {"variant": name, "kind": "variant", "parts": list(cfg.parts), "made_of": made_of,
            "online_augment": cfg.online_augment, "source": real.meta.get("source")}
    return Variant(np.concatenate(images), np.concatenate(labels), list(real.class_names),
                   provenance, meta)


def makeup_table(variants: dict[str, Variant]) -> str:
    """Rows: variant; columns: images per part, total, on-the-fly augmentation."""
    parts = sorted({p for v in variants.values() for p in v.meta["made_of"]})
    head = ["variant", *parts, "total", "online_augment"]
    rows = [[name, *(str(sum(v.meta["made_of"].get(p, [0]))) for p in parts), str(len(v.labels)),
             _spec_name(v.meta["online_augment"])] for name, v in variants.items()]
    width = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip()

    return "\n".join([line(head), line(["-" * w for w in width]), *map(line, rows)])


def _spec_name(spec) -> str:
    return "-" if spec is None else spec if isinstance(spec, str) else "custom"
