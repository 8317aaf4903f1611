"""Where the signatures of one image are asked for: the pull's mirrors and upstream, as the image is.

The signature tags and the referrers listing are tag lookups, so ``resolve = true`` mirrors are
asked first, in order, then the upstream; manifests and blobs by digest try every mirror, then the
upstream, all verified. A mirror's "none here" (404, or an empty listing) moves on to the next
source, unless that mirror holds the image itself (its manifest, digest-verified): then it has
answered for the image's signatures as it answers for its tags, and the upstream is not asked (no
upstream traffic, and no retries against an unreachable upstream in an air-gapped pull). Without
``sources`` only ``client`` is asked. In a batch, one tag listing per repository can answer that a
signature tag is absent without a request (:mod:`..tagsnapshot`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from ...descriptor import Descriptor
from ...store import Store
from ..blobfetch import BlobFetcher
from ..client import RegistryClient
from ..errors import NotFoundInRegistry
from ..manifests import VerifiedManifest, fetch_document
from ..mirrors import Sources, Tallies
from ..tagsnapshot import TagSnapshots

T = TypeVar("T")


@dataclass
class SignatureSources:
    """The sources that may answer for the signatures of ``subject`` in ``repo``."""

    client: RegistryClient  # the upstream
    repo: str
    subject: Descriptor
    sources: Sources | None = None
    tag_snapshots: TagSnapshots | None = None  # shared by a batch: tags listed once per repository
    tallies: Tallies = field(default_factory=dict)  # per source; not part of the image's own tallies
    _has_subject: dict[str, bool] = field(default_factory=dict)  # per mirror
    _subject_lock: trio.Lock = field(default_factory=trio.Lock)

    async def lookup(self, step: Callable[[RegistryClient], Awaitable[T]], empty: T) -> T:
        """``step`` at each source that may answer a tag, first answer wins; ``empty`` when none has it."""
        if self.sources is None:
            try:
                return await step(self.client)
            except NotFoundInRegistry:
                return empty

        async def attempt(client: RegistryClient) -> tuple[T, int]:
            try:
                return await step(client), 0
            except NotFoundInRegistry:
                if client.endpoint.is_mirror and await self._mirror_has_subject(client):
                    return empty, 0  # the mirror holds the image: it has answered for its signatures
                raise

        try:
            return await self.sources.first(self.client, True, self.tallies, attempt)
        except NotFoundInRegistry:
            return empty

    async def _mirror_has_subject(self, client: RegistryClient) -> bool:
        """Whether the mirror serves the image's own manifest (verified against its digest); asked once."""
        async with self._subject_lock:
            known = self._has_subject.get(client.domain)
            if known is None:
                try:
                    await fetch_document(client, self.repo, str(self.subject.digest), self.subject.bare(),
                                         f"manifest {self.subject.digest}")
                    known = True
                except NotFoundInRegistry:
                    known = False
                self._has_subject[client.domain] = known
            return known

    async def tagged_document(self, client: RegistryClient, tag: str) -> VerifiedManifest:
        """The manifest ``tag`` names at ``client``; NotFoundInRegistry without a request when the
        batch's listing of the repository shows no such tag."""
        if self.tag_snapshots is not None and await self.tag_snapshots.lacks(client, self.repo, tag):
            raise NotFoundInRegistry(f"{client.domain}: {self.repo}:{tag} is not among the repository's tags")
        return await fetch_document(client, self.repo, tag, None, f"{self.repo}:{tag}")

    async def document(self, listed: Descriptor, where: str) -> VerifiedManifest:
        """The manifest ``listed`` names, by digest, from the first source that has it."""
        if self.sources is None:
            return await fetch_document(self.client, self.repo, str(listed.digest), listed, where)
        return await self.sources.document(self.client, self.repo, str(listed.digest), listed, where, self.tallies)

    async def blob(self, store: Store, desc: Descriptor) -> None:
        """Download and commit ``desc`` into ``store`` from the first source that has it."""
        if self.sources is None:
            await BlobFetcher(store, self.client).fetch(self.repo, desc)
        else:
            await self.sources.blob(store, self.client, self.repo, desc, self.tallies)
