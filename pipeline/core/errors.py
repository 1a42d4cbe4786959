"""One exception type for mistakes a user can fix (bad params, bad files, missing data), and
the one line for a path that cannot be written.

The CLI turns it into one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import contextlib
import errno
from pathlib import Path

# a read-only mount, a folder without write permission, a file where a folder should be
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST)


class SynthaugError(Exception):
    """A user-facing error: the message names the file or parameter and what is allowed."""


def unwritable_error(path: Path | str, e: OSError) -> SynthaugError:
    """The one line for an output that cannot be written where it is asked for: a read-only
    mount, a folder without write permission, or a file on the way (`parent/file/output`)."""
    why = {errno.EROFS: "the file system is read-only", errno.ENOTDIR: "a file is in the way",
           errno.EEXIST: "a file is in the way"}.get(e.errno, "no permission to write there")
    where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
    return SynthaugError(f"{path}: cannot write this output: {why}{where}; choose an output "
                         "path in a folder you can write")


@contextlib.contextmanager
def writing(path: Path | str):
    """Inside: an OSError of UNWRITABLE kind becomes `unwritable_error(path)`."""
    try:
        yield
    except OSError as e:
        if e.errno in UNWRITABLE:
            raise unwritable_error(path, e) from None
        raise
