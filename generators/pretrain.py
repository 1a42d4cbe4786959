"""Pretrain, then adapt: the unlabelled images a generator learns before its labelled split.

`train_generator.<family>.pretrain.source` names them: `pool`, the rest of the train pool
(the images outside the split the generator adapts to: the train pool is the train split
before `prepare.train_per_class` thinned it, so never a val or test image), or `folder:PATH`,
another image folder (the DAGAN idea: a related data set's images teach strokes and textures),
read by the folder source reader (pipeline.data.sources) at the data set's size and channels.
Labels are dropped either way: pretraining is unconditional (the null label). The setting
itself is generators.pretrain_config's.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from synthaug.generators.pretrain_config import PretrainConfig
from synthaug.pipeline.core.errors import SynthaugError

if TYPE_CHECKING:
    import numpy as np


def setting(family: str) -> str:
    return f"train_generator.{family}.pretrain.source"


def folder_images(spec: str, shape: tuple[int, int, int], family: str) -> np.ndarray:
    """The images under folder `spec` ("folder:PATH", one sub-folder per class), uint8
    N x H x W x C at the generator's `shape` (C, H, W); files that cannot be read are skipped."""
    import numpy as np

    from synthaug.pipeline.data.config import PrepareConfig
    from synthaug.pipeline.data.sources import load_source

    c, h, w = shape
    if h != w:
        raise SynthaugError(f"{setting(family)}: folder sources need square images, the data "
                            f"set's are {h} x {w}; use pool")
    cfg = PrepareConfig(source=spec, size=h, channels=c, on_bad_image="skip")
    try:
        raw = load_source(cfg, ".", progress=False)
    except SynthaugError as e:  # the reader names prepare.source: this is another setting
        raise SynthaugError(str(e).replace("prepare.source", setting(family), 1)) from None
    return np.array(raw.images)  # out of the reader's scratch map


def pretrain_images(family: str, cfg: PretrainConfig, shape: tuple[int, int, int],
                    pool: Callable[[], np.ndarray | None]) -> np.ndarray | None:
    """The images `cfg` (the family's `pretrain`) pretrains on, None without pretraining.
    `pool()` gives the train pool's images outside the split (None: the data have no pool)."""
    source = cfg.source
    if source is None:
        return None
    if source == "pool":
        images = pool()
        if images is None or not len(images):
            raise SynthaugError(f"{setting(family)}: pool: the train pool has no images beyond "
                                "the split (prepare.train_per_class keeps them all); thin the "
                                "split with prepare.train_per_class, or use folder:PATH")
        return images
    images = folder_images(source, shape, family)
    if not len(images):
        raise SynthaugError(f"{setting(family)}: no readable images under {source[7:]}")
    return images


def images_hash(images: np.ndarray | None) -> str:
    """The content of the pretraining images, for a run's identity ("" without)."""
    import numpy as np

    if images is None:
        return ""
    h = hashlib.sha256(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()


def pool_rest(prepared) -> np.ndarray | None:
    """The images of the train pool under `prepared` outside its train split (None: prepare
    kept the whole pool as the split)."""
    from synthaug.pipeline.data.prepare import POOL, more_real
    from synthaug.pipeline.data.storage import is_dataset

    if not is_dataset(prepared / POOL):
        return None
    return more_real(prepared).images
