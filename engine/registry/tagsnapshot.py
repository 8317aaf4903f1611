"""One tag listing per repository answers a pull batch's "is this signature tag there?" questions.

Pull looks up, per image, two tags that usually do not exist: cosign's ``sha256-<hex>.sig`` and
the ``sha256-<hex>`` referrers tag. When a batch pulls several images of one repository, one
``GET /v2/<repo>/tags/list`` page answers those lookups for all of them: a tag it does not name
costs no request, a tag it names is fetched as before. Bulk pulls of a fleet's gadgets (many tags
of few repositories) lose most of their requests that way; the registry's per-request cost is what
bounds them.

The listing is a snapshot: it is used for :data:`SNAPSHOT_TTL` seconds and only when it is whole
(one page shorter than the page size, no next link). Anything else (an error, a paginated
repository, a mirror, whose listing may cover only what it has cached) leaves the lookup to ask for
the tag itself, as a single-image pull always does. The cost of the snapshot: a signature pushed
within that window before an image's manifest was fetched can be missed, where a lookup of its own
would have found it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from ..errors import GadgetStoreError
from .client import RegistryClient
from .mirrors import MirrorClient
from .taglist import fetch_tag_page

MIN_IMAGES_PER_REPO = 2  # one image: two small lookups, where a listing of a big repository is large
SNAPSHOT_TTL = 10.0  # seconds a listing stands for the repository's tags (see the module's note)
PAGE_SIZE = 1000


@dataclass
class _Snapshot:
    taken_at: float
    ready: trio.Event = field(default_factory=trio.Event)
    tags: frozenset[str] | None = None  # None: no usable listing; ask for each tag


class TagSnapshots:
    """Per pull batch, keyed by (registry, repository); made from the batch's ``(domain, repo)`` pairs."""

    def __init__(self, repos: Iterable[tuple[str, str]]) -> None:
        counts = Counter(repos)
        self._listed = {key for key, n in counts.items() if n >= MIN_IMAGES_PER_REPO}
        self._snapshots: dict[tuple[str, str], _Snapshot] = {}

    async def lacks(self, client: RegistryClient, repo: str, tag: str) -> bool:
        """True only when a whole, fresh listing of ``repo`` does not name ``tag``."""
        key = (client.domain, repo)
        if key not in self._listed or isinstance(client, MirrorClient):
            return False
        snapshot = self._snapshots.get(key)
        now = trio.current_time()
        if snapshot is None or (snapshot.ready.is_set() and now - snapshot.taken_at > SNAPSHOT_TTL):
            snapshot = self._snapshots[key] = _Snapshot(now)
            try:
                snapshot.tags = await self._list(client, repo)
            finally:
                snapshot.ready.set()  # also when cancelled or failed: the others ask for their tags
        else:
            await snapshot.ready.wait()
        return snapshot.tags is not None and tag not in snapshot.tags

    async def _list(self, client: RegistryClient, repo: str) -> frozenset[str] | None:
        url = client.url(f"/v2/{repo}/tags/list?n={PAGE_SIZE}")
        try:
            tags, following = await fetch_tag_page(client, repo, url, f"tags of {repo}")
        except GadgetStoreError:
            return None
        whole = following is None and len(tags) < PAGE_SIZE  # some registries cap a page without a link
        return frozenset(tags) if whole else None
