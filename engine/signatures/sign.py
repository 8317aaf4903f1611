"""``image sign``: write a cosign-compatible signature for a stored image into the store.

Formats (the manifests are laid out field for field as cosign writes them):
* ``legacy`` (default): manifest tagged ``sha256-<hex>.sig``; config is go-containerregistry's
  empty-image config naming the payload as its only diff_id; one simple-signing layer whose
  annotation ``dev.cosignproject.cosign/signature`` holds the base64 signature.
* ``oci11``: the same manifest with ``artifactType`` and config media type
  ``application/vnd.dev.cosign.artifact.sig.v1+json`` and a ``subject``; kept alive as a pin.
* ``bundle``: a Sigstore bundle v0.3 (DSSE over an in-toto statement) referrer, pinned; it has no
  transparency-log entry, so ``cosign verify`` needs ``--insecure-ignore-tlog`` for it.
Signing again in the same format replaces the previous signature (ig accepts exactly one).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import mediatypes as mt
from ..descriptor import Descriptor, canonical_json
from ..digest import Digest
from ..reference import legacy_signature_tag
from ..resolve import resolve
from ..store import Store
from . import constants as c
from .bundle import build_bundle, build_statement
from .dsse import pae
from .locate import referrers
from .signing_keys import SigningKey, public_key_of, sign_bytes
from .simplesigning import build_payload

SIGN_FORMATS = ("legacy", "oci11", "bundle")


@dataclass(frozen=True)
class SignResult:
    digest: Digest
    format: str
    signature: Descriptor
    tag: str | None


def _ggcr_desc(media_type: str, digest: Digest, size: int, **extra: Any) -> dict[str, Any]:
    """A descriptor in go-containerregistry's field order (mediaType, size, digest)."""
    return {"mediaType": media_type, "size": size, "digest": str(digest), **extra}


def signature_config(payload_digest: Digest) -> bytes:
    """The config cosign's signature images carry (an empty image plus one layer)."""
    return canonical_json({
        "architecture": "", "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(payload_digest)]}, "config": {},
    })


def simple_signing_manifest(store: Store, payload: bytes, signature: bytes, config_media_type: str,
                            subject: Descriptor | None = None) -> bytes:
    payload_digest = store.ingest.put(payload)
    config = signature_config(payload_digest)
    config_digest = store.ingest.put(config)
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
    if subject is not None:
        manifest["artifactType"] = c.COSIGN_SIG_ARTIFACT
    manifest["config"] = _ggcr_desc(config_media_type, config_digest, len(config))
    manifest["layers"] = [_ggcr_desc(c.SIMPLE_SIGNING, payload_digest, len(payload), annotations={
        c.COSIGN_SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()})]
    if subject is not None:
        manifest["subject"] = _ggcr_desc(subject.media_type, subject.digest, subject.size)
    return canonical_json(manifest)


def bundle_manifest(store: Store, key: SigningKey, root: Descriptor, created: datetime) -> bytes:
    statement = build_statement(root.digest)
    signature = sign_bytes(key, pae(c.IN_TOTO_PAYLOAD_TYPE, statement))
    bundle = build_bundle(statement, signature, public_key_of(key).der)
    bundle_digest = store.ingest.put(bundle)
    store.ingest.put(c.EMPTY_JSON)
    return canonical_json({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": _ggcr_desc(mt.OCI_EMPTY, c.EMPTY_JSON_DIGEST, len(c.EMPTY_JSON)),
        "layers": [_ggcr_desc(c.BUNDLE_V03, bundle_digest, len(bundle))],
        "annotations": {
            c.BUNDLE_CONTENT_ANNOTATION: "dsse-envelope",
            c.BUNDLE_PREDICATE_ANNOTATION: c.COSIGN_SIGN_PREDICATE,
            mt.ANNOTATION_CREATED: created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "subject": _ggcr_desc(root.media_type, root.digest, root.size),
        "artifactType": c.BUNDLE_V03,
    })


def sign_image(store: Store, ref: str, key: SigningKey, fmt: str = "legacy",
               created: datetime | None = None) -> SignResult:
    """Sign the image ``ref`` names (a tag, a digest: see :mod:`..resolve`); the signature's
    docker-reference is its repository (for a digest alone, the one repository that tags it)."""
    if fmt not in SIGN_FORMATS:
        raise ValueError(f"unknown signature format {fmt!r}")
    found = resolve(store, ref)
    root = found.descriptor
    with store.lease():
        if fmt == "bundle":
            data = bundle_manifest(store, key, root, created or datetime.now(UTC))
            artifact_type = c.BUNDLE_V03
        else:
            payload = build_payload(found.repository("sign"), root.digest)
            signature = sign_bytes(key, payload)
            legacy = fmt == "legacy"
            data = simple_signing_manifest(store, payload, signature,
                                           c.OCI_CONFIG if legacy else c.COSIGN_SIG_ARTIFACT,
                                           None if legacy else root)
            artifact_type = c.COSIGN_SIG_ARTIFACT
        digest = store.ingest.put(data)
        if fmt == "legacy":
            desc = Descriptor(mt.OCI_MANIFEST, digest, len(data))
            tag = legacy_signature_tag(root.digest)
            with store.transaction() as txn:
                txn.tag(tag, desc)
            return SignResult(root.digest, fmt, desc, tag)
        desc = Descriptor(mt.OCI_MANIFEST, digest, len(data), {"artifactType": artifact_type})
        with store.transaction() as txn:
            previous = [r.desc.digest for r in referrers(store, root.digest, artifact_type) if r.via_tag is None]
            for old in previous:
                if old != digest:
                    txn.unpin(old)
            txn.pin(desc)
        return SignResult(root.digest, fmt, desc, None)
