"""Pushing the stored signatures of an image, after the image itself.

The legacy tag goes under the same repository; referrers go by digest (a registry with the
Referrers API links them through ``subject`` and says so with ``OCI-Subject``). When a registry
does not confirm that, its ``sha256-<hex>`` referrers-tag index is fetched, merged and put back,
as the distribution spec asks of clients. A stored referrers-tag index is pushed as the referrers
it lists. Only flat signatures (a manifest and its plain blobs) are pushed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from ... import mediatypes as mt
from ...descriptor import Descriptor, children, is_document, parse_document
from ...digest import Digest
from ...errors import InvalidManifest
from ...reference import referrers_tag
from ...signatures.locate import signature_artifacts
from ...store import Store
from ..client import RegistryClient
from ..errors import NotFoundInRegistry, RegistryError
from ..manifests import fetch_document
from ..tasks import task_group
from .referrers import index_entries, listing_entry, merged_index

BlobPusher = Callable[[Descriptor], Awaitable[None]]


@dataclass(frozen=True)
class SignatureArtifact:
    """One signature to send: its manifest, its plain blobs, and how to name it."""

    desc: Descriptor
    data: bytes
    blobs: tuple[Descriptor, ...]
    tag: str | None  # the legacy tag; None: a referrer, put by digest
    listing: Descriptor | None = None  # for referrers: its entry in a referrers index


def _flat_artifact(store: Store, desc: Descriptor, tag: str | None) -> SignatureArtifact:
    data = store.blobs.read(desc.digest, max_size=mt.MAX_MANIFEST_BYTES)
    doc = parse_document(data, f"signature {desc.digest}")
    kids = children(doc, f"signature {desc.digest}")
    if any(is_document(kid) for kid in kids):
        raise InvalidManifest(f"signature {desc.digest} nests manifests; only flat signatures are pushed")
    listing = listing_entry(desc.bare(), doc) if tag is None else None
    return SignatureArtifact(desc.bare(), data, tuple(kids), tag, listing)


def plan_signature_push(store: Store, digest: Digest) -> list[SignatureArtifact]:
    """Blocking: what to push for the image ``digest``; a referrers-tag index is unpacked into referrers."""
    out: list[SignatureArtifact] = []
    seen: set[Digest] = set()
    for artifact in signature_artifacts(store, digest):
        if artifact.tag == referrers_tag(digest):
            where = f"referrers index {artifact.tag}"
            index = parse_document(store.blobs.read(artifact.desc.digest, max_size=mt.MAX_MANIFEST_BYTES), where)
            entries = [e for e in index_entries(index.get("manifests"), where) if store.blobs.has(e.digest)]
            items: list[tuple[Descriptor, str | None]] = [(e, None) for e in entries]
        else:
            items = [(artifact.desc, artifact.tag)]
        for desc, tag in items:
            if desc.digest not in seen:
                seen.add(desc.digest)
                out.append(_flat_artifact(store, desc, tag))
    return out


async def _put_manifest(client: RegistryClient, repo: str, desc: Descriptor, data: bytes, reference: str
                        ) -> bool:
    """PUT one document; True when the registry confirmed a ``subject`` link (``OCI-Subject``)."""
    resp = await client.request(
        "PUT", f"/v2/{repo}/manifests/{reference}", scopes=(f"repository:{repo}:pull,push",), ok=(201,),
        body=data, headers=[("Content-Type", desc.media_type)], what=f"pushing signature {desc.digest}",
        idempotent=True,
    )
    linked = resp.header("oci-subject") is not None
    await resp.discard()
    return linked


async def _update_referrers_tag(client: RegistryClient, repo: str, digest: Digest,
                                entries: Sequence[Descriptor]) -> None:
    """Merge ``entries`` into the registry's ``sha256-<hex>`` index, as spec'd for registries without the API."""
    tag = referrers_tag(digest)
    try:
        current = await fetch_document(client, repo, tag, None, f"{repo}:{tag}")
    except NotFoundInRegistry:
        current = None
    if current is not None and not current.desc.is_index:
        raise RegistryError(f"{repo}:{tag} exists but is not a referrers index; not overwriting it")
    data = merged_index(None if current is None else current.doc, entries)
    if data is not None:
        await _put_manifest(client, repo, Descriptor(mt.OCI_INDEX, Digest.of_bytes(data), len(data)), data, tag)


async def push_signatures(store: Store, client: RegistryClient, repo: str, digest: Digest,
                          push_blob: BlobPusher, limiter: trio.CapacityLimiter) -> int:
    """Push every stored signature of the image ``digest`` into ``repo``; returns how many.

    ``push_blob`` is the image pusher's (HEAD, mount or upload); the image itself must be pushed
    first. A blob that fails raises its own error, as the image's blobs do.
    """
    artifacts = await trio.to_thread.run_sync(plan_signature_push, store, digest)
    unlinked: list[Descriptor] = []
    for artifact in artifacts:
        async with task_group() as nursery:
            for blob in artifact.blobs:
                nursery.start_soon(_limited_blob, push_blob, blob, limiter)
        linked = await _put_manifest(client, repo, artifact.desc, artifact.data,
                                     artifact.tag or str(artifact.desc.digest))
        if artifact.listing is not None and not linked:
            unlinked.append(artifact.listing)
    if unlinked:
        await _update_referrers_tag(client, repo, digest, unlinked)
    return len(artifacts)


async def _limited_blob(push_blob: BlobPusher, blob: Descriptor, limiter: trio.CapacityLimiter) -> None:
    async with limiter:
        await push_blob(blob)
