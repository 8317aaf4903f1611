"""What a command is waiting on right now, named for a person: the line a ``--timeout`` prints.

The connection pool lists every request from its start (a queued one included) until its body is
read or dropped; a retry's backoff is listed too. Labels come from the URL (``blob sha256:0123…
of host/repo``), never from its query, which may name an account.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

MAX_DESCRIPTION = 240  # one line
_SHORT_HEX = 12
_V2_RE = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>blobs/uploads|blobs|manifests|tags|referrers)(?:/(?P<rest>.*))?$")


def _short(reference: str) -> str:
    """``sha256:<first 12 hex>`` of a digest; anything else (a tag) as it is."""
    algorithm, sep, hexpart = reference.partition(":")
    return f"{algorithm}:{hexpart[:_SHORT_HEX]}" if sep and len(hexpart) > _SHORT_HEX else reference


def request_label(method: str, url: str) -> str:
    """What the request to ``url`` is doing, in the words of the distribution API."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    path = parts.path or "/"
    match = _V2_RE.match(path)
    if path.rstrip("/") == "/v2":
        return f"{method} {host}/v2/"
    if match is None:
        return f"{method} {host}{path}"
    repo = f"{host}/{match['name']}"
    kind, rest = match["kind"], match["rest"] or ""
    if kind == "blobs/uploads":
        return f"upload to {repo}"
    if kind == "blobs":
        return f"blob {_short(rest)} of {repo}"
    if kind == "manifests":
        return f"manifest {repo}{'@' if ':' in rest else ':'}{_short(rest)}"
    if kind == "tags":
        return f"tag list of {repo}"
    return f"referrers of {repo}@{_short(rest)}"


class InFlight:
    """Labels of what is under way, with how many of each (a blob's parallel Range requests are one)."""

    def __init__(self) -> None:
        self._active: dict[str, int] = {}

    def enter(self, label: str) -> None:
        self._active[label] = self._active.get(label, 0) + 1

    def leave(self, label: str) -> None:
        count = self._active.get(label, 0) - 1
        if count > 0:
            self._active[label] = count
        else:
            self._active.pop(label, None)

    @contextlib.contextmanager
    def track(self, label: str) -> Iterator[None]:
        self.enter(label)
        try:
            yield
        finally:
            self.leave(label)

    def labels(self) -> list[str]:
        """Oldest first."""
        return list(self._active)

    def describe(self, width: int = MAX_DESCRIPTION) -> str:
        """One line: the oldest labels that fit in ``width``, then how many more; '' when idle."""
        labels = self.labels()
        shown: list[str] = []
        for i, label in enumerate(labels):
            rest = len(labels) - i - 1
            more = f" and {rest} more" if rest else ""
            if shown and len(", ".join([*shown, label])) + len(more) > width:
                return ", ".join(shown) + f" and {len(labels) - len(shown)} more"
            shown.append(label)
        return ", ".join(shown)
