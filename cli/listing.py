"""Formatting of ``image list``: ig's columns on a terminal, plain rows or JSON otherwise."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

from gadgetstore.engine.humanize import human_duration
from gadgetstore.engine.images import ImageRow

HEADERS = ("REPOSITORY", "TAG", "DIGEST", "CREATED")
DIGEST_WIDTH = 12
DEFAULT_WIDTH = 16


def created_ago(created: str, now: datetime | None = None) -> str:
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return human_duration((now - when).total_seconds()).lower() + " ago"


def _escape(value: str) -> str:
    """Go's strconv.Quote escaping, without the surrounding quotes."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _fit(value: str, width: int) -> str:
    if len(value) > width:
        return value[: max(0, width - 1)] + "…"
    return value.ljust(width)


def format_rows(rows: list[ImageRow], tty: bool, no_trunc: bool, now: datetime | None = None) -> str:
    lines: list[list[str]] = [list(HEADERS)]
    for row in rows:
        if tty and not no_trunc:
            digest = row.digest.split(":", 1)[-1][:DIGEST_WIDTH]
            created = created_ago(row.created, now)
        else:
            digest, created = row.digest, row.created
        lines.append([_escape(row.repository), _escape(row.tag), digest, _escape(created)])
    if not tty or no_trunc:
        return "\n".join(" ".join(cells) for cells in lines) + "\n"
    columns = shutil.get_terminal_size((DEFAULT_WIDTH * 3 + DIGEST_WIDTH + 3, 24)).columns
    share = max(DEFAULT_WIDTH, (columns - DIGEST_WIDTH - 3) // 3)
    widths = (share, share, DIGEST_WIDTH, share)
    out = [" ".join(_fit(cell, w) for cell, w in zip(cells, widths, strict=True)).rstrip() for cells in lines]
    return "\n".join(out) + "\n"


def format_json(rows: list[ImageRow], pretty: bool) -> str:
    data = [{"Repository": r.repository, "Tag": r.tag, "Digest": r.digest, "Created": r.created} for r in rows]
    return json.dumps(data, indent=2 if pretty else None, separators=None if pretty else (",", ":"))
