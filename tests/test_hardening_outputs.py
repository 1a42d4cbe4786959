"""Issue 17, items 1 and 7: outputs never delete what synthaug did not write, killed runs'
leftovers are cleared, and output modes follow the umask."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from synthaug.pipeline.core.errors import SynthaugError
from tests.conftest import one_line_error
from synthaug.pipeline.core.outputs import MARKER, atomic_output
from synthaug.pipeline.data.storage import write_dataset


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def packed(folder, n=12, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    write_dataset(folder, rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
                  np.arange(n) % classes, [f"c{i}" for i in range(classes)])


def test_prepare_into_the_folder_above_the_images_is_refused(run_cli, image_folder, tmp_path):
    image_folder(tmp_path / "mine" / "images", per_class=6)
    (tmp_path / "mine" / "notes.txt").write_text("my notes")
    before = files_of(tmp_path / "mine")
    (tmp_path / "params.yaml").write_text(
        "paths:\n  prepared: mine\nprepare:\n  source: folder:mine/images\n"
        "  train_per_class: null\n")
    r = run_cli(tmp_path, "prepare")
    one_line_error(r, "paths.prepared", "prepare.source")
    assert files_of(tmp_path / "mine") == before  # nothing deleted


def test_augment_into_a_users_folder_is_refused_before_any_work(run_cli, tmp_path):
    """A folder of the user's holding files like an augment output's (a PNG, a JSON) as
    paths.augmented: one line before any augmentation runs, nothing deleted."""
    for split in ("train", "val", "test"):
        packed(tmp_path / "data" / "prepared" / split)
    mine = tmp_path / "holiday"
    mine.mkdir()
    (mine / "holiday.png").write_bytes(b"png")
    (mine / "notes.json").write_text("{}")
    (tmp_path / "params.yaml").write_text("paths:\n  augmented: holiday\n")
    r = run_cli(tmp_path, "augment", "--no-progress")
    one_line_error(r, "paths.augmented", "holiday", "not replaced")
    assert "copies" not in r.stdout  # refused before the work, not after it
    assert sorted(p.name for p in mine.iterdir()) == ["holiday.png", "notes.json"]


def test_augment_onto_the_prepared_splits_is_refused(run_cli, tmp_path):
    for split in ("train", "val", "test"):
        packed(tmp_path / "data" / "prepared" / split)
    before = files_of(tmp_path / "data")
    (tmp_path / "params.yaml").write_text("paths:\n  augmented: data/prepared\n")
    one_line_error(run_cli(tmp_path, "augment"), "paths.augmented", "paths.prepared")
    (tmp_path / "params.yaml").write_text("paths:\n  variants: data/prepared/variants\n")
    one_line_error(run_cli(tmp_path, "compose"), "paths.variants", "is inside paths.prepared")
    assert files_of(tmp_path / "data") == before


def test_export_into_its_own_data_set_is_refused(run_cli, tmp_path):
    packed(tmp_path / "set")
    one_line_error(run_cli(tmp_path, "export", "set", "--to", "set/png"), "--to", "is inside")
    assert not (tmp_path / "set" / "png").exists()


def test_atomic_output_replaces_only_its_own_folders(tmp_path):
    out = tmp_path / "out"
    with atomic_output(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / MARKER).is_file()
    with atomic_output(out) as tmp:  # its own output: replaced
        (tmp / "a.txt").write_text("2")
    assert (out / "a.txt").read_text() == "2"

    foreign = tmp_path / "foreign"
    (foreign / "photos").mkdir(parents=True)
    (foreign / "photos" / "x.jpg").write_text("precious")
    with pytest.raises(SynthaugError, match="not replaced: it holds photos,") as e:
        with atomic_output(foreign) as tmp:
            (tmp / "photos").mkdir()  # a folder of the same name is not enough
            (tmp / "photos" / "result.json").write_text("{}")
    assert "\n" not in str(e.value)
    assert (foreign / "photos" / "x.jpg").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no debris

    # a user's folder that holds files of the output's own names and kinds: still refused
    # (an output folder without the marker is never judged by what it holds)
    user = tmp_path / "user"
    packed(user / "train")
    (user / "holiday.png").write_bytes(b"png")
    (user / "notes.json").write_text("{}")
    with pytest.raises(SynthaugError, match="not replaced: it holds holiday.png"):
        with atomic_output(user) as tmp:
            packed(tmp / "train", seed=1)
            (tmp / "preview.png").write_bytes(b"png2")
            (tmp / "notes.json").write_text("{}")
    assert (user / "holiday.png").read_bytes() == b"png" and (user / "train").is_dir()

    (tmp_path / "empty").mkdir()
    with atomic_output(tmp_path / "empty") as tmp:
        (tmp / "f").write_text("ok")
    user_file = tmp_path / "file.txt"
    user_file.write_text("keep")
    with pytest.raises(SynthaugError, match="it is a file"):
        with atomic_output(user_file):
            raise AssertionError("refused before any work")
    with pytest.raises(SynthaugError, match="folder that is not empty"):
        with atomic_output(foreign, is_dir=False):
            pass
    assert user_file.read_text() == "keep"


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=60)
    return p.pid


def test_stale_leftovers_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text("")
    dead = dead_pid()
    stale = [tmp_path / f".out.tmp-{dead}-abc123", tmp_path / f".out.old-{dead}",
             tmp_path / ".out.tmp-k2j4h5l6"]  # the last: an older synthaug's name, no PID
    live = [tmp_path / f".out.tmp-{os.getppid()}-zz", tmp_path / ".out.tmp-fresh123"]
    other = tmp_path / f".other.tmp-{dead}-abc123"  # another output's: not ours to judge
    for d in stale + live + [other]:
        d.mkdir()
        (d / "big.npy").write_bytes(b"x" * 100)
    day_ago = time.time() - 2 * 86400
    os.utime(stale[2], (day_ago, day_ago))
    with atomic_output(out) as tmp:
        (tmp / "new").write_text("1")
    assert not any(d.exists() for d in stale)
    assert all(d.exists() for d in live) and other.exists()


def test_killed_between_the_renames_brings_the_previous_output_back(tmp_path):
    old = tmp_path / f".out.old-{dead_pid()}"  # moved aside, then the run died
    old.mkdir()
    (old / MARKER).write_text("")
    (old / "v").write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "out"):
            raise RuntimeError("this run fails too")
    assert (tmp_path / "out" / "v").read_text() == "previous" and not old.exists()


@pytest.mark.parametrize("umask,dir_mode,file_mode", [(0o022, 0o755, 0o644),
                                                      (0o027, 0o750, 0o640)])
def test_modes_follow_the_umask(tmp_path, umask, dir_mode, file_mode):
    previous = os.umask(umask)
    try:
        with atomic_output(tmp_path / "out") as tmp:
            (tmp / "sub").mkdir(mode=0o700)
            weights = tmp / "sub" / "weights.safetensors"
            weights.write_bytes(b"w")
            weights.chmod(0o600)  # what safetensors' save_file leaves
        with atomic_output(tmp_path / "m.json", is_dir=False) as f:
            f.write_text("{}")
    finally:
        os.umask(previous)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "out") == mode(tmp_path / "out" / "sub") == dir_mode
    assert mode(tmp_path / "out" / "sub" / "weights.safetensors") == file_mode
    assert mode(tmp_path / "m.json") == file_mode


def test_a_folder_without_the_marker_is_never_replaced(tmp_path):
    """The output guard against random folder contents (files and folders named like the
    output's own, packed data sets, links, hidden files): without the marker nothing of it
    is replaced or deleted; with it, the new output replaces it."""
    import random

    rng = random.Random(0)
    names = ["images.npy", "labels.npy", "meta.json", "manifest.csv", "grid.png", "a.png",
             "notes.json", "budget.csv", ".hidden", "train", "val", "x.safetensors"]
    for case in range(40):
        out = tmp_path / f"case{case}"
        out.mkdir()
        made = []
        for _ in range(rng.randint(1, 5)):
            where = out / rng.choice(["", "train", "sub"])
            where.mkdir(exist_ok=True)
            name = rng.choice(names)
            if not (where / name).exists():
                (where / name).write_text(str(rng.random()))
                made.append(where / name)
        if rng.random() < 0.2:
            (out / "link").symlink_to(made[0])
        marked = rng.random() < 0.3
        if marked:
            (out / MARKER).write_text("written by synthaug")
        before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
        try:
            with atomic_output(out) as tmp:
                for name in rng.sample(names, 3):
                    (tmp / name).write_text("new")
        except SynthaugError as e:
            assert not marked and "not replaced" in str(e) and "\n" not in str(e)
            assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
            assert all(p.read_text() != "new" for p in made)
        else:
            assert marked, f"case {case}: replaced a folder without the marker: {before}"
            assert (out / MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no debris


# ---------------------------------------------------------------- issue 31, item 6
# Tests run as root, where permission bits stop no write and no read-only mount can be made:
# an unwritable place is a path through a FILE, or os.open / mkdir made to fail as they would.

def test_an_output_below_a_file_is_one_line_before_any_work(run_cli, tmp_path):
    (tmp_path / "params.yaml").write_text("prepare:\n  source: digits\n  size: 8\n")
    (tmp_path / "afile").write_text("mine\n")
    r = run_cli(tmp_path, "prepare", "-S", "paths.prepared=afile/prepared")
    one_line_error(r, "afile/prepared: cannot write this output: a file is in the way")
    assert (tmp_path / "afile").read_text() == "mine\n"


@pytest.mark.parametrize("errno_,why", [(errno.EROFS, "the file system is read-only"),
                                         (errno.EACCES, "no permission to write there")])
def test_an_unwritable_folder_is_one_line(tmp_path, monkeypatch, errno_, why):
    real_open = os.open

    def refuse(path, flags, *a, **k):  # what a read-only mount or a 0555 folder answers
        if flags & os.O_CREAT:
            raise OSError(errno_, os.strerror(errno_), str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(SynthaugError, match=f"out: cannot write this output: {why}") as e:
        with atomic_output(tmp_path / "out"):
            raise AssertionError("no work before the check")
    assert "\n" not in str(e.value)  # was: FileNotFoundError from the lock's fallback
    assert not (tmp_path / "out").exists()


def test_timings_on_a_file_fail_before_the_work(run_cli, tmp_path):
    (tmp_path / "params.yaml").write_text("prepare:\n  source: digits\n  size: 8\n")
    (tmp_path / "t").write_text("")
    r = run_cli(tmp_path, "prepare", "-S", "paths.timings=t")
    one_line_error(r, "paths.timings: t is a file, not a folder")
    assert not (tmp_path / "data").exists()  # nothing prepared, nothing committed


def _kill_item_2(state, item):
    if item == 2:  # as the out-of-memory killer would
        os.kill(os.getpid(), signal.SIGKILL)
    return item * 10


def test_a_killed_worker_names_its_item_and_the_others_finish():
    from synthaug.pipeline.core.pool import imap

    got = []
    with pytest.raises(SynthaugError, match=r"^cell 2: the worker process running it was "
                                            r"killed by SIGKILL \(out of memory\?\)") as e:
        for i, r in imap(tuple, (), _kill_item_2, [0, 1, 2, 3, 4], workers=2,
                         torch_threads=False, describe=lambda x: f"cell {x}"):
            got.append((i, r))
    assert sorted(got) == [(0, 0), (1, 10), (3, 30), (4, 40)]
    assert "\n" not in str(e.value)
