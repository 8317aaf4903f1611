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
from ..descriptor import Descriptor, parse_document
from ..digest import Digest
from ..errors import DigestMismatch, GadgetStoreError, IntegrityError, InvalidManifest
from .client import RegistryClient
from .http import BodyTooLarge

ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST])
_GENERIC_TYPES = {"", "application/json", "text/plain", "application/octet-stream"}


@dataclass(frozen=True)
class Document:
    desc: Descriptor
    data: bytes
    doc: dict[str, Any]


def media_type_of(doc: dict[str, Any], content_type: str, where: str) -> str:
    """The document's type from its body, checked against the header; inferred when both are vague."""
    declared = doc.get("mediaType")
    header = content_type.split(";", 1)[0].strip().lower()
    if declared is not None and not isinstance(declared, str):
        raise InvalidManifest(f"{where}: mediaType is not a string")
    if declared and header not in _GENERIC_TYPES and declared != header:
        raise InvalidManifest(f"{where}: mediaType {declared} does not match Content-Type {header}")
    media_type = declared or (header if header not in _GENERIC_TYPES else "")
    if not media_type:
        media_type = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
    if media_type in mt.INDEX_TYPES and ("config" in doc or "layers" in doc):
        raise InvalidManifest(f"{where}: an index must not have config or layers")
    if media_type in mt.MANIFEST_TYPES and "manifests" in doc:
        raise InvalidManifest(f"{where}: a manifest must not have manifests")
    if media_type not in mt.INDEX_TYPES and media_type not in mt.MANIFEST_TYPES:
        raise InvalidManifest(f"{where}: unsupported manifest type {media_type}")
    return media_type


async def fetch_document(
    client: RegistryClient, repo: str, reference: str, expected: Descriptor | Digest | None, where: str
) -> Document:
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
    doc = parse_document(data, where)
    media_type = media_type_of(doc, content_type, where)
    if isinstance(expected, Descriptor) and expected.media_type and expected.media_type != media_type:
        raise InvalidManifest(f"{where}: descriptor says {expected.media_type}, document is {media_type}")
    return Document(Descriptor(media_type, actual, len(data)), data, doc)
