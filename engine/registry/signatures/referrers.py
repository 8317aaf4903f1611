"""OCI 1.1 referrers on the wire: the Referrers API and its fallback, the referrers tag schema.

A registry with the API lists the referrers of a digest at ``/v2/<repo>/referrers/<digest>`` (pages
followed as :mod:`..paging` allows); one without it (distribution 2.8 answers 404) may carry a
``sha256-<hex>`` tag naming an index of them, which a client that pushes a referrer merges its entry
into. Only referrers of :data:`~...signatures.constants.SIGNATURE_ARTIFACT_TYPES` are signatures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from ... import mediatypes as mt
from ...descriptor import Descriptor, canonical_json
from ...digest import Digest
from ...errors import InvalidManifest
from ...gojson import go_loads
from ...signatures.constants import SIGNATURE_ARTIFACT_TYPES
from ...signatures.locate import artifact_type_of
from ..client import RegistryClient
from ..errors import RegistryError
from ..paging import Pages, next_link

MAX_REFERRER_PAGES = 8
_API_MISSING = (400, 404, 405)  # the Referrers API is absent: fall back to the referrers tag


class ReferrersApi:
    """Per batch: which registries have the Referrers API. The first image to ask a registry finds
    out while the batch's other images wait for its answer, so a registry without the API gets one
    probe per batch, not one per image in flight; one whose answer is not usable is not asked again."""

    def __init__(self) -> None:
        self._has: dict[str, bool] = {}
        self._probing: dict[str, trio.Lock] = {}

    async def listing(self, domain: str, ask: Callable[[], Awaitable[list[Descriptor] | None]]
                      ) -> list[Descriptor] | None:
        """``ask()``'s answer (None: no usable API), or None without asking once the registry is known to lack it."""
        if domain not in self._has:
            async with self._probing.setdefault(domain, trio.Lock()):
                if domain not in self._has:
                    answer = await ask()
                    self._has[domain] = answer is not None
                    return answer
        if not self._has[domain]:
            return None
        answer = await ask()
        if answer is None:
            self._has[domain] = False
        return answer


async def api_listing(client: RegistryClient, repo: str, digest: Digest, warn: Callable[[str], None]
                      ) -> list[Descriptor] | None:
    """The Referrers API listing of ``digest`` (all pages), or None when the registry does not have the API.

    A next page on another origin is not followed: what the pages before it listed is kept, and
    ``warn`` is told (their signatures are still verified as any are; the rest stay unknown). The
    first page alone decides whether the API is there; a later page that is no listing is an error,
    not a listing cut short (a signature on it would read as absent).
    """
    out: list[Descriptor] = []
    path = f"/v2/{repo}/referrers/{digest}"
    url = client.url(path)
    pages = Pages(url, client.origin, f"referrers of {path}", "referrers", MAX_REFERRER_PAGES)
    while True:
        resp = await client.request("GET", url, scopes=(f"repository:{repo}:pull",), ok=(200, *_API_MISSING),
                                    headers=[("Accept", mt.OCI_INDEX)], what=f"referrers of {path}")
        async with resp:
            if resp.status != 200:
                await resp.discard()
                return _no_api(pages, f"answered {resp.status}")
            data = await resp.read(mt.MAX_MANIFEST_BYTES)
            links = resp.header_all("link")
        try:
            doc = go_loads(data)
        except (ValueError, UnicodeDecodeError):
            doc = None  # a 200 that is not JSON: some front end, not the API
        if not isinstance(doc, dict):
            return _no_api(pages, "is not a JSON object")
        out.extend(index_entries(doc.get("manifests"), "referrers listing"))
        following = next_link(links, url)
        if following is None:
            return out
        refusal = pages.elsewhere(following)
        if refusal is not None:
            warn(f"{refusal}; kept the {len(out)} referrer(s) its first {pages.read} page(s) listed")
            return out
        url = pages.follow(following)


def _no_api(pages: Pages, why: str) -> list[Descriptor] | None:
    """None (no Referrers API) when the first page says so; a later page saying so cuts the listing."""
    if pages.read > 1:
        raise RegistryError(f"{pages.where}: page {pages.read} {why}")
    return None


def index_entries(items: object, where: str) -> list[Descriptor]:
    """The ``manifests`` of a referrers listing or referrers-tag index, each a checked descriptor."""
    if not isinstance(items, list):
        raise InvalidManifest(f"{where} has no manifests list")
    return [Descriptor.from_json(item, f"{where} manifests[{i}]") for i, item in enumerate(items)]


def is_signature(listed: Descriptor) -> bool:
    """Whether a listed referrer's ``artifactType`` is one of a signature."""
    return listed.extra.get("artifactType") in SIGNATURE_ARTIFACT_TYPES


def listing_entry(desc: Descriptor, doc: dict[str, Any]) -> Descriptor:
    """A referrer as the Referrers API lists it: artifactType and the manifest's annotations."""
    extra: dict[str, Any] = {"artifactType": artifact_type_of(doc)}
    annotations = doc.get("annotations")
    if isinstance(annotations, dict) and annotations:
        extra["annotations"] = annotations
    return Descriptor(desc.media_type, desc.digest, desc.size, extra)


def merged_index(current: dict[str, Any] | None, entries: Sequence[Descriptor]) -> bytes | None:
    """A referrers-tag index listing what ``current`` lists and then ``entries``; None when it
    already lists them all (nothing to put back)."""
    listed: list[dict[str, Any]] = []
    if current is not None:
        manifests = current.get("manifests")
        listed = [m for m in manifests if isinstance(m, dict)] if isinstance(manifests, list) else []
    known = {m.get("digest") for m in listed}
    added = [e.to_json() for e in entries if str(e.digest) not in known]
    if not added:
        return None
    return canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [*listed, *added]})
