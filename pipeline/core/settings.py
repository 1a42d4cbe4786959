"""Ground floor of every params section: the `Section` base (unknown keys rejected,
assignment validated), the `Device` type and the one-line formatting of pydantic errors.
Torch-free, so validation and `synthaug --help` stay fast."""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def check_device(v: str) -> str:
    if not DEVICE_RE.match(v):
        raise ValueError(f"unknown device {v!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    return v


Device = Annotated[str, AfterValidator(check_device)]
# every seed reaches numpy and torch, which take 0..2^32-1 everywhere (prepare.seed checks the
# same range itself): a negative or huge one is one line at validation, not a traceback later
SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def format_error(e: ValidationError, tags: frozenset[str] | set[str] = frozenset()) -> str:
    """The first error of `e` as one line, `loc.of.key: message (got value) [and N more]`;
    `tags` are the union tags pydantic puts into the location of discriminated unions."""
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if p not in tags)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"].startswith("literal_error") or err["type"] == "union_tag_invalid":
        msg = msg.replace("Input should be", "allowed:")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    got = err.get("input")
    tail = "" if err["type"] == "extra_forbidden" or isinstance(got, (dict, list)) else f" (got {got!r})"
    more = f" [and {len(e.errors()) - 1} more]" if len(e.errors()) > 1 else ""
    return f"{loc}: {msg}{tail}{more}" if loc else f"{msg}{tail}{more}"

