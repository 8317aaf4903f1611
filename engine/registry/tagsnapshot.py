"""One tag listing per repository answers a pull batch's "is this signature tag there?" questions.

Pull looks up, per image, two tags that usually do not exist: cosign's ``sha256-<hex>.sig`` and
the ``sha256-<hex>`` referrers tag. One ``GET /v2/<repo>/tags/list`` (its pages followed) answers
those lookups for every image of the batch in that repository, a single image included: a tag it
does not name costs no request, a tag it names is fetched as before. A batch of N images in R
repositories then makes R listings instead of 2N probes that nearly always answer 404; the
registry's per-request cost is what bounds a bulk pull.

The listing is a snapshot: it is used for :data:`SNAPSHOT_TTL` seconds and only when it is whole
(its last page shorter than asked for, no next link). Anything else (an error, a mirror, whose
listing may cover only what it has cached, or more pages than the probes it would save: two per
image of the repository) leaves the lookups to ask for each tag itself. The cost of the snapshot:
a signature pushed within that window before an image's manifest was fetched can be missed, where
a lookup of its own would have found it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from ..errors import GadgetStoreError
from .client import RegistryClient
from .taglist import list_repository_tags

SNAPSHOT_TTL = 10.0  # seconds a listing stands for the repository's tags (see the module's note)
PAGE_SIZE = 1000
MAX_PAGES = 10
LOOKUPS_PER_IMAGE = 2  # the probes one listing page stands in for, per image of the repository


@dataclass
class _Snapshot:
    taken_at: float
    ready: trio.Event = field(default_factory=trio.Event)
    tags: frozenset[str] | None = None  # None: no usable listing; ask for each tag


class TagSnapshots:
    """Per pull batch, keyed by (registry, repository); made from the batch's ``(domain, repo)`` pairs."""

    def __init__(self, repos: Iterable[tuple[str, str]]) -> None:
        self._images = Counter(repos)
        self._snapshots: dict[tuple[str, str], _Snapshot] = {}

    async def lacks(self, client: RegistryClient, repo: str, tag: str) -> bool:
        """True only when a whole, fresh listing of ``repo`` does not name ``tag``."""
        key = (client.domain, repo)
        if key not in self._images or client.endpoint.is_mirror:
            return False
        snapshot = self._snapshots.get(key)
        now = trio.current_time()
        if snapshot is None or (snapshot.ready.is_set() and now - snapshot.taken_at > SNAPSHOT_TTL):
            snapshot = self._snapshots[key] = _Snapshot(now)
            try:
                snapshot.tags = await self._list(client, repo, self._images[key])
            finally:
                snapshot.ready.set()  # also when cancelled or failed: the others ask for their tags
        else:
            await snapshot.ready.wait()
        return snapshot.tags is not None and tag not in snapshot.tags

    async def _list(self, client: RegistryClient, repo: str, images: int) -> frozenset[str] | None:
        pages = max(1, min(MAX_PAGES, LOOKUPS_PER_IMAGE * images))
        try:
            tags, whole = await list_repository_tags(client, repo, f"tags of {repo}", page_size=PAGE_SIZE,
                                                     max_tags=PAGE_SIZE * pages, max_pages=pages)
        except GadgetStoreError:
            return None
        return frozenset(tags) if whole else None
