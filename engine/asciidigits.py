"""Decimal numbers in protocol text (headers, query strings, addresses): ASCII digits only.

``str.isdigit`` is true for ``²`` and ``٣``, and ``int`` reads ``٣`` as 3 but raises on ``²``;
what a peer sends must be neither misread nor a crash.
"""

from __future__ import annotations

_DIGITS = frozenset("0123456789")


def parse_decimal(text: str) -> int | None:
    """The value of a non-empty run of ASCII digits; None for anything else (signs, spaces, ``²``)."""
    if not text or not _DIGITS.issuperset(text):
        return None
    return int(text)
