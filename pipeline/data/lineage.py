"""Where a stage's output came from, checked by every reader: the one staleness check.

Each output that is made from another stage's records the content hash (storage.content_hash,
in meta.json or config.json) of the set it was made from: an augmented set its parent train
split (`parent_content_hash`), a synthetic set its generator's train split
(`generator_trained_on`), a variant the train split (`train_content_hash`), a generator and
the judge their train split (`trained_on`), a classifier its variant (`trained_on`). Every
reader compares that record with the set as it is now (`check_made_from`; `check_fresh` for
the derived data sets) and refuses a stale output, or one that records nothing, with one line
naming it and what to rerun. Light module: meta.json files only, no arrays.
"""
from __future__ import annotations

from pathlib import Path

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.storage import read_meta


def dataset_hash(folder: Path | str) -> str:
    """The content hash `folder`'s meta.json records (meta.json alone is read: cheap); one
    line when the folder is not a packed set."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        raise SynthaugError(f"{folder}: not a packed data set (missing meta.json); "
                            "run `synthaug prepare` first?")
    return read_meta(folder / "meta.json")["content_hash"]


def check_made_from(output: Path | str, recorded: object, upstream: Path | str,
                    current: str, rerun: str) -> None:
    """The one staleness check every reader of another stage's output makes: `output`
    records (`recorded`) the content hash of the `upstream` data set it was made from, and it
    must be `current`, that set's hash now. Anything else is a one-line SynthaugError naming
    `output`, `upstream` and `rerun` (the command(s) to rerun, in backquotes): a stale output
    (`upstream` rewritten since, say by a `prepare` with another seed or size) or one that
    records nothing (written before synthaug recorded it)."""
    if recorded == current:
        return
    if not isinstance(recorded, str) or not recorded:
        raise SynthaugError(f"{output}: records no content hash of the {upstream} it was made "
                            f"from (an older synthaug wrote it); rerun {rerun} (or `dvc repro`)")
    raise SynthaugError(f"{output}: stale, made from another {upstream} (content hash "
                        f"{recorded[:12]}, now {current[:12]}); rerun {rerun} (or `dvc repro`)")


# what each kind of derived set records about the prepared train split it was made from
MADE_FROM = {"augmented": "parent_content_hash", "synthetic": "generator_trained_on",
             "variant": "train_content_hash"}


def check_fresh(folder: Path | str, meta: dict, kind: str, train_dir: Path | str,
                train_hash: str) -> None:
    """`check_made_from` for a set of `kind` (augmented: `synthaug augment`'s; synthetic: a
    `synthaug sample` set, through its generator; variant: `synthaug compose`'s) read from
    `folder` with `meta`: it must have been made from the prepared train split in `train_dir`
    as it is now (`train_hash`)."""
    recorded = meta.get(MADE_FROM[kind])
    if kind == "synthetic":  # the generator's record: {"content_hash": ..., "source": ...}
        recorded = recorded.get("content_hash") if isinstance(recorded, dict) else None
        family = meta.get("generator")
        rerun = (f"`synthaug train-generator{' ' + family if isinstance(family, str) else ''}`"
                 f", then `synthaug sample {Path(folder).name}`")
        if family == "pretrained":  # drawn from a pretrained pipeline: nothing to train
            rerun = f"`synthaug sample {Path(folder).name}`"
    else:
        rerun = "`synthaug augment`" if kind == "augmented" else "`synthaug compose`"
    check_made_from(folder, recorded, train_dir, train_hash, rerun)
