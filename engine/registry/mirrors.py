"""Trying mirrors before the upstream, with the same verification and without upstream secrets.

Each mirror is an endpoint (:meth:`.Endpoint.mirror`) with a client of its own on the session's
shared pool: no credentials, no ``--cert-dir`` client certificate, no retries (a mirror is an
optimisation, so the next source is tried at once). Everything a mirror sends is checked exactly
like the upstream's answer — manifests against the digest asked for, blobs re-hashed at commit —
so a lying mirror costs one wasted download, and is then skipped for :data:`COOLDOWN` seconds, like
a mirror that is down, except as the last resort once the upstream has failed too (air-gapped, it
is the only source). A 404 is normal (a peer that lacks the blob) and only moves on to the next
source.

Peers (``[peers]``, see :mod:`.peers`) come before all of that for blobs: the blob's owner is asked
first and may hold the request open (``wait=``) while its own pull is still fetching the blob; when
this node is the owner, or the owner says no, the mirrors and the upstream follow as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

from ..descriptor import Descriptor
from ..digest import Digest
from ..errors import GadgetStoreError
from ..store import Store
from .blobfetch import BlobFetcher
from .client import RegistryClient, Session
from .endpoint import Endpoint
from .errors import NotFoundInRegistry
from .manifests import VerifiedManifest, fetch_document
from .mirrors_config import Mirror, Peers
from .peers import SELF_ENV, find_self, rank

log = logging.getLogger("gadgetstore.registry.mirrors")
COOLDOWN = 30.0
MAX_PEER_FETCHES = 64  # peer downloads at once in one batch, whatever the fleet's size
T = TypeVar("T")


@dataclass
class SourceTally:
    """What one source delivered to one image: verified bytes and items, and failed attempts."""

    bytes: int = 0
    items: int = 0
    failures: int = 0


Tallies = dict[str, SourceTally]


def upstream_label(domain: str) -> str:
    return f"upstream {domain}"


def mirror_label(mirror: Mirror) -> str:
    return f"mirror {mirror.label}"


def peer_label(url: str) -> str:
    return f"peer {url}"


def merge(into: Tallies, other: Tallies) -> None:
    for name, tally in other.items():
        total = into.setdefault(name, SourceTally())
        total.bytes += tally.bytes
        total.items += tally.items
        total.failures += tally.failures


@dataclass
class _Answer(Generic[T]):
    """A source's answer, told apart from the error another source ended in."""

    value: T


class Sources:
    """The mirrors of a batch's upstreams, tried in order; the upstream client comes last."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.config = session.options.registries
        self._peer_endpoints: dict[tuple[str, str], Endpoint] = {}
        self._down_until: dict[Mirror, float] = {}
        self._peer_self: tuple[str | None] | None = None  # found once per batch
        self._peer_lock = trio.Lock()
        self._peer_empty: set[str] = set()  # peers that lacked a blob after a full wait: asked with wait=0
        # Peer downloads are outside the blob budget (see Puller._blob), so they get their own bounds:
        # per peer the pool's connections, so each request is built (wait= included) once it can go,
        # and no ingest file is opened while queued; in all, at most MAX_PEER_FETCHES.
        self._peer_slots: dict[str, trio.Semaphore] = {}
        self._peer_limiter = trio.CapacityLimiter(MAX_PEER_FETCHES)  # sized when self is found

    async def _client(self, mirror: Mirror, upstream: str) -> RegistryClient:
        return await self.session.client_at(Endpoint.mirror(mirror, upstream))

    def _peer(self, url: str, upstream: str, wait: float) -> Endpoint:
        """The peer at ``url`` asked to wait ``wait`` s for a blob, or not at all once it lacked one
        after a full wait in this batch (decided as each request is built)."""
        found = self._peer_endpoints.get((url, upstream))
        if found is None:
            found = self._peer_endpoints[(url, upstream)] = Endpoint.peer(
                url, upstream, lambda: 0.0 if url in self._peer_empty else wait)
        return found

    def _eligible(self, domain: str, by_tag: bool) -> list[Mirror]:
        if self.config is None:
            return []
        return [m for m in self.config.mirrors_for(domain) if m.resolve or not by_tag]

    def _usable(self, domain: str, by_tag: bool) -> list[Mirror]:
        now = trio.current_time()
        return [m for m in self._eligible(domain, by_tag) if self._down_until.get(m, 0.0) <= now]

    async def first(self, upstream: RegistryClient, by_tag: bool, tallies: Tallies,
                    fetch: Callable[[RegistryClient], Awaitable[tuple[T, int]]]) -> T:
        """``fetch`` at each usable mirror in order, then the upstream: the first answer wins.

        A mirror's NotFoundInRegistry moves on to the next source; any other error also skips the
        mirror for :data:`COOLDOWN`. ``by_tag``: only ``resolve = true`` mirrors are asked. When the
        upstream fails too, the mirrors that failed or were skipped get one more try before the
        upstream's error is raised: air-gapped, a mirror's one bad answer (to this image or to any
        other of the batch) must not leave every later item with nowhere to come from.
        """
        missing: set[Mirror] = set()  # answered 404 in this call: not asked again
        for mirror in self._usable(upstream.domain, by_tag):
            outcome = await self._try_mirror(mirror, upstream, tallies, fetch)
            if isinstance(outcome, _Answer):
                return outcome.value
            if isinstance(outcome, NotFoundInRegistry):
                missing.add(mirror)
            else:
                self._down_until[mirror] = trio.current_time() + COOLDOWN
                log.warning("mirror %s skipped for %.0f s: %s", mirror.label, COOLDOWN, outcome)
        tally = tallies.setdefault(upstream_label(upstream.domain), SourceTally())
        try:
            value, size = await fetch(upstream)
        except GadgetStoreError:
            tally.failures += 1
            for mirror in self._eligible(upstream.domain, by_tag):
                if mirror not in missing:
                    outcome = await self._try_mirror(mirror, upstream, tallies, fetch)
                    if isinstance(outcome, _Answer):
                        return outcome.value
            raise  # the upstream's error: the mirrors were an optimisation
        tally.bytes += size
        tally.items += 1
        return value

    async def _try_mirror(self, mirror: Mirror, upstream: RegistryClient, tallies: Tallies,
                          fetch: Callable[[RegistryClient], Awaitable[tuple[T, int]]]) -> _Answer[T] | GadgetStoreError:
        """One ``fetch`` at ``mirror``, tallied: its answer, or the error it ended in."""
        tally = tallies.setdefault(mirror_label(mirror), SourceTally())
        try:
            value, size = await fetch(await self._client(mirror, upstream.domain))
        except GadgetStoreError as err:
            tally.failures += 1
            return err
        tally.bytes += size
        tally.items += 1
        return _Answer(value)

    def _peers(self, domain: str) -> Peers | None:
        peers = self.config.peers if self.config is not None else None
        return peers if peers is not None and peers.applies_to(domain) else None

    async def _self(self, peers: Peers) -> str | None:
        async with self._peer_lock:
            if self._peer_self is None:
                found = await trio.to_thread.run_sync(find_self, peers, self.session.options.peer_self)
                self._peer_self = (found,)
                if found is None:
                    log.warning("this node is not among the peers (no local address matches; set peers.self, "
                                "$%s or --peer-self): it will only ask them, and own no blobs", SELF_ENV)
                others = len(peers.urls) - (0 if found is None else 1)
                per_peer = self.session.options.max_connections_per_origin
                self._peer_limiter.total_tokens = max(1, min(MAX_PEER_FETCHES, per_peer * others))
            return self._peer_self[0]

    async def from_peers(self, store: Store, upstream: RegistryClient, repo: str, desc: Descriptor,
                         tallies: Tallies) -> int | None:
        """The blob from its owner among the peers; None when this node owns it or must look elsewhere.

        Peers are walked in rank order: one that is down (or in cooldown) passes the blob to the next,
        this node's own entry ends the walk (it is the owner), and the first peer that answers decides:
        its bytes (verified at commit like any source's), or a 404 after waiting, which sends the
        caller to the mirrors and the upstream. No credentials ever go to a peer.
        """
        peers = self._peers(upstream.domain)
        if peers is None:
            return None
        me = await self._self(peers)
        for url in rank(peers.urls, desc.digest):
            if url == me:
                return None
            mirror = Mirror(url, insecure=True)
            if self._down_until.get(mirror, 0.0) > trio.current_time():
                continue
            tally = tallies.setdefault(peer_label(url), SourceTally())
            client = await self.session.client_at(self._peer(url, upstream.domain, peers.wait))
            slot = self._peer_slots.setdefault(url, trio.Semaphore(self.session.options.max_connections_per_origin))
            try:
                async with slot, self._peer_limiter:
                    received = await BlobFetcher(store, client).fetch(repo, desc)
            except NotFoundInRegistry:
                tally.failures += 1
                self._peer_empty.add(url)  # it is not pulling what this node pulls: wait no more
                return None
            except GadgetStoreError as err:
                tally.failures += 1
                self._down_until[mirror] = trio.current_time() + COOLDOWN
                log.warning("peer %s skipped for %.0f s: %s", url, COOLDOWN, err)
                continue
            tally.bytes += received
            tally.items += 1
            return received
        return None

    async def document(self, upstream: RegistryClient, repo: str, reference: str,
                       expected: Descriptor | Digest | None, where: str, tallies: Tallies) -> VerifiedManifest:
        """A manifest or index; by tag only mirrors with ``resolve`` are asked."""

        async def fetch(client: RegistryClient) -> tuple[VerifiedManifest, int]:
            doc = await fetch_document(client, repo, reference, expected, where)
            return doc, len(doc.data)

        return await self.first(upstream, expected is None, tallies, fetch)

    async def blob(self, store: Store, upstream: RegistryClient, repo: str, desc: Descriptor,
                   tallies: Tallies) -> int:
        """Download and commit ``desc``; returns the bytes received from the source that served it."""

        async def fetch(client: RegistryClient) -> tuple[int, int]:
            received = await BlobFetcher(store, client).fetch(repo, desc)
            return received, received

        return await self.first(upstream, False, tallies, fetch)
