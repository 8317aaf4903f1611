"""HTTP ``Range`` for blob GETs: one byte range, as the distribution-spec conformance cases expect.

Multiple ranges and unparseable headers are ignored (the full blob is sent with 200, which RFC
9110 allows); a range that cannot be satisfied, or whose end is before its start, is a 416.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC_RE = re.compile(r"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class Unsatisfiable(Exception):
    """The 416 case.

    Internal: the routes answer it with a 416 response; it never leaves the server."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range to send, None for the whole blob; raises :class:`Unsatisfiable`."""
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _SPEC_RE.fullmatch(spec)
    if match is None:
        return None
    first, last = match.groups()
    if first and last:
        start, end = int(first), int(last)
        if end < start or start >= size:
            raise Unsatisfiable
        return ByteRange(start, min(end, size - 1))
    if first:
        start = int(first)
        if start >= size:
            raise Unsatisfiable
        return ByteRange(start, size - 1)
    if last:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    return None
