"""Fetching and checking manifests and indexes (small JSON documents, capped at 4 MiB).

A document is trusted only after its bytes hash to the digest we asked for (by digest) or to the
``Docker-Content-Digest`` the registry announced (by tag), and its ``mediaType`` agrees with the
``Content-Type`` (CVE-2021-41190).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .. import mediatypes as mt
from ..descriptor import Descriptor, checked_document
from ..digest import Digest
from ..errors import DigestMismatch, GadgetStoreError, IntegrityError, InvalidManifest
from .client import RegistryClient
from .http import BodyTooLarge

ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST])


@dataclass(frozen=True)
class VerifiedManifest:
    """A manifest or index whose bytes matched its digest (and size), with their parse."""

    desc: Descriptor
    data: bytes
    doc: dict[str, Any]


async def fetch_document(
    client: RegistryClient, repo: str, reference: str, expected: Descriptor | Digest | None, where: str
) -> VerifiedManifest:
    """GET a manifest or index by tag or digest and verify it before anything uses it."""
    limit = mt.MAX_MANIFEST_BYTES
    if isinstance(expected, Descriptor):
        if expected.size > limit:
            raise InvalidManifest(f"{where}: declared size {expected.size} exceeds the {limit}-byte limit")
        limit = expected.size
    try:
        resp, data = await client.request_body(
            "GET", f"/v2/{repo}/manifests/{reference}", scopes=(f"repository:{repo}:pull",), limit=limit,
            headers=[("Accept", ACCEPT)], what=where,
        )
    except BodyTooLarge:
        raise IntegrityError(f"{where}: manifest is larger than {limit} bytes") from None
    content_type = resp.header("content-type") or ""
    announced = resp.header("docker-content-digest")
    want: Digest | None = expected.digest if isinstance(expected, Descriptor) else expected
    if want is None and announced:
        try:
            want = Digest.parse(announced.strip())
        except GadgetStoreError as err:
            raise InvalidManifest(f"{where}: bad Docker-Content-Digest header: {err}") from None
    algorithm = want.algorithm if want else "sha256"
    actual = Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
    if want is not None and actual != want:
        raise DigestMismatch(f"{where}: manifest content has digest {actual}, expected {want}")
    if isinstance(expected, Descriptor) and len(data) != expected.size:
        raise IntegrityError(f"{where}: manifest is {len(data)} bytes, its descriptor says {expected.size}")
    doc, media_type = checked_document(data, where, content_type,
                                       expected.media_type if isinstance(expected, Descriptor) else "")
    return VerifiedManifest(Descriptor(media_type, actual, len(data)), data, doc)
