"""Fetching the signatures of one image into the store's blobs; nothing is recorded here.

Looked for, concurrently with the image graph, in the image's own repository: cosign's legacy tag
``sha256-<hex>.sig``, and the referrers of the root digest (:mod:`.referrers`: the API, else the
referrers-tag index). Only signature referrers are kept, at most :data:`MAX_REFERRERS`. Unlike ig
(first format wins) every format found is stored, so a later offline ``verify`` can use whichever
one the trusted key made. A missing signature is not an error; a signature that cannot be fetched
is a warning, never a failed pull. Referrers found through a referrers-tag index are pinned one by
one rather than keeping that index: it may list other artifacts (SBOMs, …) whose blobs are not
fetched, and a tagged index must reach only present blobs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import trio

from ...descriptor import Descriptor, children, is_document, subject
from ...errors import GadgetStoreError, InvalidManifest
from ...reference import legacy_signature_tag, referrers_tag
from ...signatures.constants import SIGNATURE_ARTIFACT_TYPES
from ...signatures.encoding import MAX_SIGNATURE_DOCUMENT
from ...signatures.locate import artifact_type_of
from ...store import Store
from ..client import RegistryClient
from ..errors import NotFoundInRegistry
from ..manifests import VerifiedManifest
from ..mirrors import Sources, Tallies
from ..tagsnapshot import TagSnapshots
from ..tasks import task_group
from .referrers import ReferrersApi, api_listing, index_entries, is_signature
from .sources import SignatureSources

MAX_REFERRERS = 16  # signature referrers fetched per image: a hostile listing cannot make us fetch more
MAX_SIGNATURE_CHILDREN = 8


@dataclass(frozen=True)
class FetchedSignature:
    """A signature whose blobs are in the store: tagged (``sha256-<hex>.sig``) or, with tag None, pinned."""

    desc: Descriptor
    tag: str | None


@dataclass
class SignatureFetch:
    """Fetch the signatures of ``subject`` from ``repo`` into the store's blobs (nothing recorded yet),
    asking ``sources`` as the image does (:mod:`.sources`); without them only ``client``."""

    store: Store
    client: RegistryClient
    repo: str
    subject: Descriptor
    limiter: trio.CapacityLimiter
    referrers_api: ReferrersApi = field(default_factory=lambda: ReferrersApi())  # shared by a batch
    sources: Sources | None = None
    tag_snapshots: TagSnapshots | None = None  # shared by a batch: tags listed once per repository
    found: list[FetchedSignature] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tallies: Tallies = field(default_factory=dict)  # per source; not part of the image's own tallies

    def __post_init__(self) -> None:
        self._at = SignatureSources(self.client, self.repo, self.subject, self.sources, self.tag_snapshots,
                                    self.tallies)

    async def run(self) -> None:
        """Both lookups at once; a registry that fails one only costs a warning."""
        async with task_group() as nursery:
            nursery.start_soon(self._guarded, self._legacy, "cosign signature tag")
            nursery.start_soon(self._guarded, self._referrers, "signature referrers")

    async def _guarded(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        try:
            await step()
        except GadgetStoreError as err:
            self.warnings.append(f"could not fetch the {what} of {self.subject.digest}: {err}")

    async def _legacy(self) -> None:
        tag = legacy_signature_tag(self.subject.digest)

        async def step(client: RegistryClient) -> VerifiedManifest | None:
            return await self._at.tagged_document(client, tag)

        doc = await self._at.lookup(step, None)
        if doc is None:
            return
        await self._save(doc)
        self.found.append(FetchedSignature(doc.desc.bare(), tag))

    async def _referrers(self) -> None:
        """The API, else the referrers tag; a registry without the API is not asked again in this batch."""
        none: list[Descriptor] = []
        listing = await self._at.lookup(self._listing, none)
        unique = list({d.digest: d for d in listing if is_signature(d)}.values())
        if len(unique) > MAX_REFERRERS:
            self.warnings.append(f"{len(unique)} signature referrers listed for {self.subject.digest}; "
                                 f"fetching the first {MAX_REFERRERS}")
        async with task_group() as nursery:
            for desc in unique[:MAX_REFERRERS]:
                nursery.start_soon(self._guarded, partial(self._referrer, desc), f"referrer {desc.digest}")

    async def _listing(self, client: RegistryClient) -> list[Descriptor]:
        """One source's referrers of the subject; NotFoundInRegistry when it has no index, or is a
        mirror that lists no signature among them (an empty answer: the next source may have some).

        A mirror's answer is not remembered for the batch: its 404 may only mean that it lacks this
        repository, while it serves the API for the next image.
        """
        ask = partial(api_listing, client, self.repo, self.subject.digest, self.warnings.append)
        if client.endpoint.is_mirror:
            listing = await ask()
        else:
            listing = await self.referrers_api.listing(client.domain, ask)
        if listing is None:
            tag = referrers_tag(self.subject.digest)
            index = await self._at.tagged_document(client, tag)
            if not index.desc.is_index:
                raise InvalidManifest(f"referrers tag {tag} is not an index")
            listing = index_entries(index.doc.get("manifests"), "referrers tag index")
        if client.endpoint.is_mirror and not any(is_signature(d) for d in listing):
            raise NotFoundInRegistry(f"{client.domain}: no signature referrers of {self.subject.digest}")
        return listing

    async def _referrer(self, listed: Descriptor) -> None:
        where = f"signature referrer {listed.digest}"
        doc = await self._at.document(listed.bare(), where)
        subj = subject(doc.doc, where)
        if subj is None or subj.digest != self.subject.digest:
            raise InvalidManifest(f"{where}: its subject is not {self.subject.digest}")
        kind = artifact_type_of(doc.doc)
        if kind not in SIGNATURE_ARTIFACT_TYPES:
            raise InvalidManifest(f"{where}: artifact type {kind or 'none'} is not a signature type")
        await self._save(doc)
        self.found.append(FetchedSignature(Descriptor(doc.desc.media_type, doc.desc.digest, doc.desc.size,
                                                      {"artifactType": kind}), None))

    async def _save(self, doc: VerifiedManifest) -> None:
        """A signature manifest's config and layers, then the manifest: small, flat, verified."""
        where = f"signature manifest {doc.desc.digest}"
        if not doc.desc.is_manifest:
            raise InvalidManifest(f"{where} is an index, not a signature manifest")
        kids = children(doc.doc, where)
        if len(kids) > MAX_SIGNATURE_CHILDREN:
            raise InvalidManifest(f"{where} has {len(kids)} blobs; a signature has a few")
        for kid in kids:
            if is_document(kid) or kid.size > MAX_SIGNATURE_DOCUMENT:  # more than the verifier reads
                raise InvalidManifest(f"{where}: blob {kid.digest} ({kid.media_type}, {kid.size} bytes) "
                                      "is not what a signature holds")
        for kid in kids:
            if not await trio.to_thread.run_sync(self.store.blobs.has, kid.digest):
                async with self.limiter:
                    await self._at.blob(self.store, kid)
        await self.store.ingest.put_batched(doc.data, doc.desc.digest)
