"""CSV cells no spreadsheet runs as a formula (CSV injection): text that starts with = + - @,
a tab or a carriage return gets a leading ' on write (`csv_cell`), as spreadsheets themselves
mark text; a cell that starts with ' gets one more, so `csv_value` reads back exactly what was
written. Numbers, and text that is a plain number such as "-1", are left as they are."""
from __future__ import annotations

import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(v):
    """`v` as a CSV cell: text a spreadsheet would run as a formula gets a leading '."""
    if isinstance(v, str) and v.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(v):
        return "'" + v
    return v


def csv_value(cell):
    """The value `csv_cell` wrote (None, as csv.DictReader gives a short row, stays None)."""
    return cell[1:] if isinstance(cell, str) and cell.startswith("'") else cell
