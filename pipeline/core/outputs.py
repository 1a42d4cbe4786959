"""Atomic outputs: every stage writes into a temporary sibling folder and renames it into place
when done, so a crash leaves the previous output or nothing, never half an output.

An existing folder is replaced only if a synthaug stage wrote it (its MARKER file) or it is
empty; anything else is refused with one line and kept. Leftovers of killed runs are cleared at the next
run (`remove_stale`), and the output gets the modes the umask gives (`follow_umask`).

Two runs writing one output: the second stops at once with one line (`_lock`: an advisory
flock on `.NAME.lock` beside the output, held while the output is written; the kernel drops
it when its process dies, so a killed run's lock file blocks nobody). A full disk anywhere
inside an atomic output is one line too (`_no_space`), with the temporary folder removed and
the previous output left as it was.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterator

from synthaug.pipeline.core.errors import UNWRITABLE, SynthaugError, unwritable_error, writing

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk, a full quota
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
    run's siblings are kept. Call it holding the output's lock. Returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for e in path.parent.iterdir():
            m = DEBRIS.fullmatch(e.name)
            if not m or m["name"] != path.name:
                continue
            pid = m["tmp"] or m["old"]
            # the caller holds the output's lock: this process's own are from a failed attempt
            if pid is not None and int(pid) != os.getpid() and _alive(int(pid)):
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


def _foreign(old: Path) -> Path | None:
    """The first entry of existing folder `old` that no synthaug stage wrote; None when `old`
    may be replaced: it carries a MARKER (every folder output of a stage does) or is empty.
    Nothing else is judged by its names or file types: a user's folder that happens to hold
    files named like an output's is still the user's."""
    if any((old / m).is_file() for m in MARKERS):
        return None
    return next(iter(sorted(old.iterdir())), None)


def _refuse(path: Path, what: str) -> SynthaugError:
    return SynthaugError(f"{path}: not replaced: {what}, which no synthaug stage wrote (no "
                         f"{MARKER} file); move it away or choose another output path")


def check_replaceable(path: Path, is_dir: bool) -> None:
    """Refuse to replace a user's file or folder: checked before the work and again just
    before the commit (something may have moved in meanwhile)."""
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
    if (bad := _foreign(path)) is not None:
        raise _refuse(path, f"it holds {bad.relative_to(path).as_posix()}")


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def _lock(path: Path) -> int:
    """Hold the advisory lock of output `path` (a file descriptor to pass to `_unlock`), or
    raise a SynthaugError naming the run that holds it. The PID in the file is for the message."""
    lock = lock_path(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError as e:  # another user's lock file: reading it is enough to
            try:  # lock it; no lock file to read: the folder is not ours to write
                fd = os.open(lock, os.O_RDONLY)
            except OSError:
                raise unwritable_error(path, e) from None
        except OSError as e:
            if e.errno in NO_SPACE:  # not even room for the lock file
                raise no_space_error(lock, 0) from None
            if e.errno in UNWRITABLE:
                raise unwritable_error(path, e) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SynthaugError(f"{path} is being written by another synthaug run (pid {pid}); "
                                f"wait for it or remove {lock} if it is stale") from None
        except BaseException:
            os.close(fd)
            raise
        # the holder before us may have removed the file it locked: then lock the new one
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    with contextlib.suppress(OSError):  # who holds it, for the message of a second run
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):  # removed while held: a run that then opens the
        lock_path(path).unlink()  # old file finds it gone and locks a new one (see _lock)
    os.close(fd)


def _blocks(p: Path, leave_out: Path | None = None) -> int:
    """Bytes on disk under `p` (allocated blocks: a sized but unwritten file counts little)."""
    files = [p] if not p.is_dir() else [f for f in p.rglob("*") if f.is_file()]
    return sum(f.lstat().st_blocks * 512 for f in files
               if not f.is_symlink() and f.exists() and f != leave_out)


def _no_space(e: OSError, path: Path, tmp: Path | None, is_dir: bool) -> SynthaugError:
    """A full disk while writing output `path` (temporary folder `tmp`), in one line: the file
    (by its final name), and about how much the output needs: what is written so far plus what
    a reservation asked for (`storage.reserve`), else at least as much as the previous output."""
    where, failed = path, Path(os.path.abspath(e.filename)) if e.filename else None
    tmp = Path(os.path.abspath(tmp)) if tmp is not None else None
    if tmp is not None and failed is not None and failed.is_relative_to(tmp):
        rel = failed.relative_to(tmp)
        if is_dir and rel.parts and not rel.name.startswith("."):  # not a scratch file
            where = path / rel
    try:
        if hasattr(e, "need"):
            need = _blocks(tmp, failed) + e.need if tmp is not None else e.need
        else:
            need = max(_blocks(tmp) if tmp is not None else 0,
                       _blocks(path) if path.exists() and not path.is_symlink() else 0)
    except OSError:
        need = getattr(e, "need", 0)
    return no_space_error(where, need)


def no_space_error(where: Path | str, need: int) -> SynthaugError:
    """The one line for a full disk: the file, and about how many bytes (`need`) it takes."""
    return SynthaugError(f"no space left on device writing {where} (need about "
                         f"{max(1, math.ceil(need / 2**20))} MB); free some space there, or "
                         "choose an output path on another disk, and rerun")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 with RENAME_EXCHANGE); False where
    the C library, kernel or file system cannot."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _commit(target: Path, path: Path, is_dir: bool) -> None:
    """Put the finished `target` at `path`. A file replaces a file in one rename; a folder
    swaps places with the previous one in one step where the OS can (the previous output
    then sits in the temporary folder, which goes next), else the previous one is moved
    aside first: killed between those two renames, the next run brings it back."""
    if not (path.exists() or path.is_symlink()):
        os.replace(target, path)
        return
    if not is_dir and (path.is_symlink() or not path.is_dir()):
        os.replace(target, path)
        return
    if is_dir and path.is_dir() and not path.is_symlink() and _exchange(target, path):
        return
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.replace(path, old)
    os.replace(target, path)
    shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()


@contextlib.contextmanager
def atomic_output(path: Path | str, is_dir: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, else vanishes.

    For a folder the caller fills the yielded folder and a MARKER file is added to it;
    for a file (is_dir=False) it writes the yielded file path. An existing `path` is replaced
    only if a synthaug stage wrote it (see `_foreign`) or it is empty: a foreign folder is
    refused with a SynthaugError and kept. Leftovers of killed runs are removed first, and
    the output gets the modes the umask gives. While the output is written its lock is held
    (a second run on it fails at once, naming this one), and a full disk (ENOSPC) is one
    SynthaugError naming the file: the temporary folder goes, the previous output stays.
    """
    path = Path(path)
    check_replaceable(path, is_dir)  # early: before any work
    made = [d for d in path.parents if not d.exists()]  # nearest first
    with writing(path):  # a read-only mount, no permission, a file on the way: one line
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _lock(path), None
    try:
        remove_stale(path)
        with writing(path):
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-",
                                        dir=path.parent))
        target = tmp if is_dir else tmp / path.name
        yield target
        if is_dir:
            (tmp / MARKER).write_text(MARKER_TEXT)
        check_replaceable(path, is_dir)
        follow_umask(target)
        _commit(target, path, is_dir)
    except BaseException as e:
        full = isinstance(e, OSError) and e.errno in NO_SPACE
        error = _no_space(e, path, tmp, is_dir) if full else None  # sized before the clean-up
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _unlock(path, fd)
        fd = None
        for d in made:  # folders made only for this output: a failed run leaves none behind
            with contextlib.suppress(OSError):  # (not if something else has moved in since)
                d.rmdir()
        if error is not None:
            raise error from None
        raise
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if fd is not None:
            _unlock(path, fd)
