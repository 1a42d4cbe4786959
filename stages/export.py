"""`synthaug export`: packed data set(s) -> PNG class folders people can look at."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from synthaug.stages.common import say, user_errors



MAX_NAME_BYTES = 200  # a file name may have 255 bytes on most file systems; room for a suffix
UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")  # separators, NUL and control characters


def _safe(name: str, i: int) -> str:
    """Class name -> a folder name any file system takes: separators and control characters
    become `_`, outer spaces go, at most MAX_NAME_BYTES of UTF-8 (cut at a character)."""
    name = name.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates
    name = UNSAFE.sub("_", name).strip()
    name = name.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore").rstrip()
    return name if name not in ("", ".", "..") else f"class_{i}"


def folder_names(class_names: list[str]) -> tuple[list[str], list[str]]:
    """One distinct folder per class (`_safe`; a name already taken, e.g. "cat " after "cat",
    gets its class index: "cat_1"), and a note for each class so renamed."""
    names, notes, taken = [], [], set()
    for i, c in enumerate(class_names):
        name = safe = _safe(c, i)
        while name in taken:
            name = f"{name}_{i}"
        if name != safe:
            notes.append(f"class {i} {c!r} written as {name!r}: {safe!r} is taken")
        taken.add(name)
        names.append(name)
    return names, notes


def _export_one(folder: Path, out: Path) -> int:
    import numpy as np
    from PIL import Image

    from synthaug.pipeline.core.errors import SynthaugError
    from synthaug.pipeline.data.storage import read_dataset

    ds = read_dataset(folder)
    names, notes = folder_names(ds.class_names)
    for note in notes:
        say(f"{folder}: {note}")
    for d in set(names):
        (out / d).mkdir(parents=True)
    for i, (im, label) in enumerate(zip(ds.images, ds.labels.tolist())):
        im = np.asarray(im)
        if im.shape[2] not in (1, 3):
            raise SynthaugError(f"{folder}: {im.shape[2]} channels; PNG export takes 1 or 3")
        Image.fromarray(im[:, :, 0] if im.shape[2] == 1 else im).save(
            out / names[label] / f"{i:05d}.png")
    return len(ds.labels)


@user_errors
def command(
    dataset: Annotated[Path, typer.Argument(
        help="a packed data set folder, or a folder of them (e.g. data/prepared)")],
    to: Annotated[Path, typer.Option("--to", help="output folder for the PNG class folders")],
) -> None:
    """Write a packed data set as PNG files, one folder per class: TO/CLASS/INDEX.png.

    Given a folder of packed splits (like data/prepared with train/ val/ test/), each split
    goes to TO/SPLIT/CLASS/. INDEX is the row in the data set's manifest.csv. TO is
    replaced atomically; an existing TO that is not an earlier export is left alone.

    **Examples**

    ```
    synthaug export data/prepared --to png/prepared
    synthaug export data/synthetic/vae-prior --to png/vae-prior
    ```
    """
    import os

    from synthaug.pipeline.core.errors import SynthaugError
    from synthaug.pipeline.core.outputs import MARKERS, atomic_output
    from synthaug.pipeline.data.storage import is_dataset
    from synthaug.stages.common import path_relation

    how = path_relation(Path(os.path.realpath(to)), Path(os.path.realpath(dataset)))
    if how:  # replacing TO would delete (or write into) the data being exported
        raise SynthaugError(f"--to {to}: {how} the data set folder {dataset}; "
                            "choose a folder outside it")
    if is_dataset(dataset):
        parts = {None: dataset}
    else:
        subs = sorted(d for d in dataset.iterdir() if is_dataset(d)) if dataset.is_dir() else []
        if not subs:
            raise SynthaugError(f"{dataset}: not a packed data set (no images.npy and meta.json) "
                                "nor a folder of them; run `synthaug prepare` first?")
        parts = {d.name: d for d in subs}
    # an earlier export carries a marker (the atomic replace checks it too; this says so early)
    if to.exists() and not any((to / m).exists() for m in MARKERS) and (
            not to.is_dir() or any(to.iterdir())):
        raise SynthaugError(f"--to {to}: exists and is not an earlier export; "
                            "choose a new folder or remove it")
    total = 0
    with atomic_output(to) as tmp:
        for name, folder in parts.items():
            n = _export_one(folder, tmp / name if name else tmp)
            total += n
            say(f"{folder}: {n} PNG files -> {to / name if name else to}")
    say(f"wrote {total} PNG files under {to}")
