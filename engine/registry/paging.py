"""Paged registry listings (tags, referrers): which page comes next, and whether to follow it.

The next page is the URL of a ``Link: <…>; rel="next"`` header (RFC 8288, as registries send it),
made absolute against the page that named it. It is followed only on the registry's own origin (a
page must not send us, with our token, somewhere else) and never back to a page already read; the
callers bound the number of pages.
"""

from __future__ import annotations

import re

from .errors import RegistryError
from .http import Origin, join_url, origin_of

_LINK_RE = re.compile(r'<([^>]*)>((?:\s*;\s*[^;,]+)*)')
_REL_NEXT_RE = re.compile(r'(?:^|;)\s*rel\s*=\s*"?([^";]*)"?', re.IGNORECASE)


def next_link(values: list[str], base_url: str) -> str | None:
    """The absolute URL of the ``rel="next"`` page named by the ``Link`` header ``values``, if any."""
    for value in values:
        for match in _LINK_RE.finditer(value):
            rel = _REL_NEXT_RE.search(match.group(2))
            if rel is not None and "next" in rel.group(1).lower().split():
                return join_url(base_url, match.group(1).strip(), "Link")
    return None


def follow_next(following: str, origin: Origin, read: set[str], where: str) -> str:
    """``following`` (a :func:`next_link`), once it is known to stay on ``origin`` and not to
    return to a page in ``read``; it is added to ``read``."""
    if origin_of(following) != origin:
        raise RegistryError(f"{where}: refusing a next-page link to another origin ({origin_of(following)})")
    if following in read:
        raise RegistryError(f"{where}: the next-page link repeats an earlier page")
    read.add(following)
    return following
