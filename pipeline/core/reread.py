"""Settings that must not change while a command runs: what it read at its start, read
again before it commits its outputs.

A command keeps its settings' values and a way to read them again (`SettingsRead.record`);
`check` reads them again and, when any value differs (the file was edited meanwhile), raises
one SynthaugError naming the changed keys: the output would follow the old values while the
file, and a `dvc.lock` written after the run, say the new ones. The stage glue records the
params file it loads (stages/common.py); nothing here reads a file itself.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from synthaug.pipeline.core.errors import SynthaugError


def changed_keys(old: dict, new: dict, where: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested dicts."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{where}{k}.")
        elif a != b:
            out.append(f"{where}{k}")
    return out


class SettingsRead:
    """The settings one command read (None: none recorded yet)."""

    def __init__(self):
        self.read: tuple[Path, Callable[[], dict], dict] | None = None

    def record(self, path: Path | str, again: Callable[[], dict], values: dict) -> None:
        """`values` read from `path`; `again()` reads them anew (a SynthaugError when the
        file no longer reads)."""
        self.read = (Path(path), again, values)

    def clear(self) -> None:
        self.read = None

    def check(self) -> None:
        """One line naming the keys of the file that changed since it was read, if any."""
        if self.read is None:
            return
        path, again, values = self.read
        try:
            now = again()
        except SynthaugError as e:  # edited into something that does not read
            now = {f"(the whole file: {e})": None}
        if changed := changed_keys(values, now):
            self.read = None  # said once
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise SynthaugError(f"{path}: {', '.join(changed[:3])}{more} changed while this "
                                "command ran, which used the values read at its start; rerun "
                                "it (or `dvc repro`)")
