"""YAML text a user wrote, every problem in one line naming where: a file (a regular file or a
pipe such as `--params <(...)`, at most `limit` bytes of UTF-8: past that it is the wrong file,
or an endless one like /dev/zero, refused before PyYAML spends minutes and GBs on it), a
command-line value (argv bytes a C locale could not decode), PyYAML's own errors."""
from __future__ import annotations

import stat
from pathlib import Path

import yaml

from synthaug.pipeline.core.errors import SynthaugError


def read_yaml_file(path: Path, limit: int) -> str:
    """The text of `path`, a regular file or a pipe of at most `limit` bytes of UTF-8."""
    try:
        if not (stat.S_ISREG(mode := path.stat().st_mode) or stat.S_ISFIFO(mode)):
            raise SynthaugError(f"{path}: not a regular file (a device or socket); give a YAML "
                                "file (e.g. params.yaml)")
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise SynthaugError(f"{path}: larger than {limit / 2**20:g} MB; a params file is "
                                "a few KB of YAML: is it the right file?")
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SynthaugError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                            f"{e.start}); save it as UTF-8") from None
    except OSError as e:
        raise SynthaugError(f"{path}: cannot read the params file ({e.strerror})") from None


def argv_text(text: str, where: str) -> str:
    """A command-line value as text: bytes the locale could not decode (a C locale keeps them
    as lone surrogates) read as UTF-8, or one line saying they are not."""
    if not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SynthaugError(f"{where} {raw.decode('utf-8', 'backslashreplace')!r}: not UTF-8 "
                            "text; pass it in UTF-8 (or set LC_ALL=C.UTF-8)") from None


def yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's problem in one line (a ReaderError, a control character, has no .problem)."""
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    if isinstance(e, yaml.reader.ReaderError):
        problem = (f"unacceptable character #x{e.character:04x}: {e.reason}"
                   if isinstance(e.character, int) else e.reason)
    return " ".join(str(problem or e).split())


def yaml_error(path: Path, e: yaml.YAMLError) -> SynthaugError:
    """One line, `file:line:col: not valid YAML: problem` (PyYAML's own text spans lines)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    return SynthaugError(f"{where}: not valid YAML: {yaml_problem(e)}")
