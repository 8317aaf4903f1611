"""Finding signature artifacts of an image digest in the store, and the tags a puller should fetch.

Signatures live in the store as ig keeps them: cosign legacy manifests under the tag
``sha256-<hex>.sig``, referrers-tag-schema indexes under ``sha256-<hex>``, and OCI 1.1 referrers
(manifests with a ``subject``) as pins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..blobstore import BlobNotFound
from ..descriptor import Descriptor, is_document, subject
from ..digest import Digest
from ..errors import GadgetStoreError, IntegrityError
from ..reference import legacy_signature_tag, referrers_tag, signature_tag_subject
from ..store import Store
from . import constants as c
from .encoding import MAX_SIGNATURE_DOCUMENT, json_object
from .errors import MalformedSignature, SignatureBlobMissing


@dataclass(frozen=True)
class Referrer:
    """A manifest whose ``subject`` is the image, with its artifact type as the referrers API reports it."""

    desc: Descriptor
    artifact_type: str
    via_tag: str | None = None


@dataclass(frozen=True)
class SignatureArtifact:
    """One thing to push (or export) with an image: a tagged signature or an untagged referrer.

    ``artifact_type`` is the referrer's type, cosign's signature type for a ``.sig`` tag, and the
    index media type for a referrers-tag index.
    """

    desc: Descriptor
    tag: str | None
    artifact_type: str


def signature_refs(digest: Digest) -> list[str]:
    """Tags, in the image's repository, that may hold its signatures: fetch each that exists.

    ``sha256-<hex>.sig`` is cosign's legacy signature; ``sha256-<hex>`` is the referrers-tag-schema
    index a registry without the Referrers API carries. Referrers themselves are listed by the
    registry's Referrers API, filtered by :data:`constants.SIGNATURE_ARTIFACT_TYPES`.
    """
    return [legacy_signature_tag(digest), referrers_tag(digest)]


def artifact_type_of(doc: dict[str, Any]) -> str:
    """``artifactType``, else the config media type (the OCI referrers rule; cosign's OCI 1.1 form)."""
    value = doc.get("artifactType")
    if isinstance(value, str) and value:
        return value
    config = doc.get("config")
    if isinstance(config, dict) and isinstance(config.get("mediaType"), str):
        return str(config["mediaType"])
    return ""


def read_blob(store: Store, desc: Descriptor, what: str) -> bytes:
    """A signature blob, refused when missing, damaged or not the size its descriptor says."""
    if desc.size > MAX_SIGNATURE_DOCUMENT:
        raise MalformedSignature(f"{what}: blob {desc.digest} is {desc.size} bytes, too large for a signature")
    try:
        data = store.blobs.read(desc.digest, max_size=MAX_SIGNATURE_DOCUMENT)
    except BlobNotFound:
        raise SignatureBlobMissing(f"{what}: blob {desc.digest} is missing from the store") from None
    except IntegrityError:
        raise MalformedSignature(f"{what}: blob {desc.digest} is damaged (its content has another digest)") from None
    if len(data) != desc.size:
        raise MalformedSignature(f"{what}: blob {desc.digest} is {len(data)} bytes, its descriptor says {desc.size}")
    return data


def read_manifest(store: Store, desc: Descriptor, what: str) -> dict[str, Any]:
    return json_object(read_blob(store, desc, what), what)


def layers_of(doc: dict[str, Any], what: str) -> list[Descriptor]:
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise MalformedSignature(f"{what} has no layers list")
    try:
        return [Descriptor.from_json(item, f"{what} layers[{i}]") for i, item in enumerate(layers)]
    except GadgetStoreError as err:
        raise MalformedSignature(str(err)) from None


def _pinned_referrers(store: Store, digest: Digest) -> list[Referrer]:
    out: list[Referrer] = []
    for pin in store.pins():
        if not is_document(pin):
            continue
        try:
            doc = read_manifest(store, pin, f"referrer {pin.digest}")
            subj = subject(doc, f"referrer {pin.digest}")
        except GadgetStoreError:
            continue  # an unrelated or damaged pin is not this image's signature
        if subj is not None and subj.digest == digest:
            out.append(Referrer(pin, artifact_type_of(doc)))
    return out


def _indexed_referrers(store: Store, digest: Digest) -> list[Referrer]:
    tag = referrers_tag(digest)
    index_desc = store.lookup(tag)
    if index_desc is None:
        return []
    index = read_manifest(store, index_desc, f"referrers index {tag}")
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise MalformedSignature(f"referrers index {tag} has no manifests list")
    out: list[Referrer] = []
    for i, entry in enumerate(entries):
        try:
            desc = Descriptor.from_json(entry, f"referrers index {tag} manifests[{i}]")
        except GadgetStoreError as err:
            raise MalformedSignature(str(err)) from None
        kind = desc.extra.get("artifactType")
        out.append(Referrer(desc, kind if isinstance(kind, str) else "", via_tag=tag))
    return out


def referrers(store: Store, digest: Digest, artifact_type: str | None = None) -> list[Referrer]:
    """Pinned referrers first, then those listed by the ``sha256-<hex>`` index; deduplicated."""
    seen: set[Digest] = set()
    out: list[Referrer] = []
    for ref in [*_pinned_referrers(store, digest), *_indexed_referrers(store, digest)]:
        if ref.desc.digest in seen or (artifact_type is not None and ref.artifact_type != artifact_type):
            continue
        seen.add(ref.desc.digest)
        out.append(ref)
    return out


def signature_artifacts(store: Store, digest: Digest) -> list[SignatureArtifact]:
    """Everything to push with the image ``digest``: signature tags, then pinned referrers."""
    out: list[SignatureArtifact] = []
    for tag in signature_refs(digest):
        desc = store.lookup(tag)
        if desc is not None:
            kind = desc.media_type if desc.is_index else c.COSIGN_SIG_ARTIFACT
            out.append(SignatureArtifact(desc, tag, kind))
    for ref in _pinned_referrers(store, digest):
        out.append(SignatureArtifact(ref.desc, None, ref.artifact_type))
    return out


def record_pulled_signature(store: Store, desc: Descriptor, tag: str | None) -> None:
    """Keep a pulled signature alive: by its ``sha256-…`` tag, or pinned when it is a referrer.

    Its blobs must already be in the store (and the caller holds ``store.lease()``).
    """
    if tag is not None:
        if signature_tag_subject(tag) is None:
            raise MalformedSignature(f"{tag!r} is not a signature tag (sha256-<hex>.sig or sha256-<hex>)")
        with store.transaction() as txn:
            txn.tag(tag, desc)
        return
    doc = read_manifest(store, desc, f"referrer {desc.digest}")
    if subject(doc, f"referrer {desc.digest}") is None:
        raise MalformedSignature(f"manifest {desc.digest} has no subject; it is not a referrer")
    with store.transaction() as txn:
        txn.pin(desc)
