"""Paged registry listings (tags, referrers): which page comes next, and whether to follow it.

The next page is the URL of a ``Link: <…>; rel="next"`` header (RFC 8288, as registries send it),
made absolute against the page that named it. It is followed only on the registry's own origin (a
page must not send us, with our token, somewhere else), never back to a page already read, and
never past the listing's last allowed page (:class:`Pages`).
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


class Pages:
    """The pages of one listing, from its ``first`` URL on, at most ``max_pages`` of them.

    :meth:`follow` gives the URL of the next page or raises: a listing that goes on past its last
    allowed page is one clear error, never a listing silently cut short (a missing signature or tag
    would read as absent). ``where`` names the listing in messages and ``kind`` what it lists.
    """

    def __init__(self, first: str, origin: Origin, where: str, kind: str, max_pages: int) -> None:
        self.origin = origin
        self.where = where
        self.kind = kind
        self.max_pages = max_pages
        self._urls = {first}  # of the pages given out, the first included

    @property
    def read(self) -> int:
        """How many pages' URLs were given out, the first included."""
        return len(self._urls)

    def elsewhere(self, following: str) -> str | None:
        """Why ``following`` is not followed when it leads off the registry's origin (a page must
        not send us, with our token, somewhere else); None when it stays."""
        if origin_of(following) == self.origin:
            return None
        return f"{self.where}: refusing a next-page link to another origin ({origin_of(following)})"

    def follow(self, following: str) -> str:
        """``following`` (a :func:`next_link`), once it is known to stay on the origin, not to return
        to a page already read, and to be within ``max_pages``."""
        if self.read >= self.max_pages:
            raise RegistryError(f"{self.where}: more than {self.max_pages} pages of {self.kind}")
        refusal = self.elsewhere(following)
        if refusal is not None:
            raise RegistryError(refusal)
        if following in self._urls:
            raise RegistryError(f"{self.where}: the next-page link repeats an earlier page")
        self._urls.add(following)
        return following
