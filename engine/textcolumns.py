"""ig's text tables (pkg/columns/formatter/textcolumns), as far as ``image list`` uses them.

Column widths are scaled to the terminal (``RecalculateWidths``): fixed columns keep their width,
the others share the rest in proportion to their declared widths (rounded down), and what rounding
leaves over goes one character at a time to the non-fixed columns from the left. Every cell is
escaped as Go's ``strconv.Quote`` escapes it, cut with a trailing ``…`` when too long, and padded
to its column's width — the last column too. Without truncation (a pipe, ``--no-trunc``) cells are
neither cut nor padded.
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

DIVIDER = " "
ELLIPSIS = "…"


@dataclass(frozen=True)
class Column:
    name: str
    width: int = 16  # pkg/columns/options.go DefaultWidth
    fixed: bool = False


def go_quote_inner(text: str) -> str:
    """``strconv.Quote(text)`` without its quotes (textcolumns' buildFixedString escapes every cell)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == " " or (unicodedata.category(ch)[0] in "LMNPS" and not 0xD800 <= code <= 0xDFFF):
            out.append(ch)
        elif ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


_NAMED_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def recalculate_widths(columns: Sequence[Column], max_width: int) -> list[int]:
    """``TextColumnsFormatter.RecalculateWidths(maxWidth, false)`` for columns without min/max widths."""
    divider_width = (len(columns) - 1) * len(DIVIDER)
    required = divider_width + sum(c.width if c.fixed else 1 for c in columns)
    total_not_fixed = sum(c.width for c in columns if not c.fixed)
    total_fixed = divider_width + sum(c.width for c in columns if c.fixed)
    max_width = max(max_width, required)
    widths = [c.width if c.fixed else math.floor(c.width / total_not_fixed * (max_width - total_fixed))
              for c in columns]
    leftover = max_width - (sum(w for w, c in zip(widths, columns, strict=True) if not c.fixed) + total_fixed)
    while leftover > 0 and total_not_fixed:
        for i, column in enumerate(columns):
            if column.fixed or leftover == 0:
                continue
            widths[i] += 1
            leftover -= 1
    return widths


def fixed_string(text: str, width: int, truncate: bool) -> str:
    """``buildFixedString`` with ellipsis.End and left alignment."""
    if width <= 0:
        return ""
    text = go_quote_inner(text)
    if not truncate:
        return text
    if len(text) > width:
        text = ELLIPSIS if width <= 1 else text[: width - 1] + ELLIPSIS
    return text.ljust(width)


def terminal_width() -> int:
    """``GetTerminalWidth``: the width of the terminal on fd 0 (ig asks stdin, not stdout); 0 if none."""
    try:
        return os.get_terminal_size(0).columns
    except OSError:
        return 0


def write_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], truncate: bool, screen_width: int) -> str:
    """``WriteTable``: the upper-case header, then each row, each line ending in a newline.

    ``screen_width`` 0 keeps the declared widths (ig does not scale without a terminal size).
    """
    widths = recalculate_widths(columns, screen_width) if screen_width else [c.width for c in columns]
    lines = [[c.name.upper() for c in columns], *rows]
    return "".join(
        DIVIDER.join(fixed_string(cell, w, truncate) for cell, w in zip(line, widths, strict=True)) + "\n"
        for line in lines
    )
