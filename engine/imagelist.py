"""Formatting of ``image list``: ig's columns on a terminal, plain rows or JSON otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

from .gojson import go_json
from .humanize import human_duration
from .images import ImageRow
from .textcolumns import Column, terminal_width, write_table

DIGEST_WIDTH = 12
COLUMNS = (Column("repository"), Column("tag"), Column("digest", DIGEST_WIDTH, fixed=True), Column("created"))
"""pkg/oci/oci.go GadgetImageDesc: ``column:"digest,width:12,fixed"``, the others the default width."""


def created_ago(created: str, now: datetime | None = None) -> str:
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return human_duration((now - when).total_seconds()).lower() + " ago"


def format_rows(rows: list[ImageRow], tty: bool, no_trunc: bool, now: datetime | None = None,
                screen_width: int | None = None) -> str:
    """``ig image list`` (cmd/common/image/list.go NewListCmd): on a terminal without ``--no-trunc``
    the short digest, the age, and columns fitted to the terminal on fd 0 (``screen_width`` stands
    in for it); otherwise the raw values, one space apart."""
    short = tty and not no_trunc
    cells = []
    for row in rows:
        if short:
            digest = row.digest.removeprefix("sha256:")[:DIGEST_WIDTH] if row.digest else ""
            cells.append([row.repository, row.tag, digest, created_ago(row.created, now)])
        else:
            cells.append([row.repository, row.tag, row.digest, row.created])
    width = 0
    if short:
        width = terminal_width() if screen_width is None else screen_width
    return write_table(COLUMNS, cells, truncate=short, screen_width=width)


def format_json(rows: list[ImageRow], pretty: bool) -> str:
    """``json.Marshal``/``MarshalIndent`` of ig's GadgetImageDesc list: Go's field names, HTML-escaped
    (``<none>`` is ``\\u003cnone\\u003e``, as Docker's JSON writes it too), no trailing newline."""
    data = [{"Repository": r.repository, "Tag": r.tag, "Digest": r.digest, "Created": r.created} for r in rows]
    return go_json(data, pretty=pretty)
