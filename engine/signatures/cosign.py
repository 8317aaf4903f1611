"""cosign's three storage formats, read from the store as candidate (signature, signed data) pairs.

Tried in ig's order: legacy ``sha256-<hex>.sig`` tag, OCI 1.1 referrer (or the referrers-tag
index), Sigstore bundle referrer. The first format whose signature is present and loads decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..descriptor import Descriptor
from ..digest import Digest
from ..reference import legacy_signature_tag
from ..store import Store
from . import constants as c
from .bundle import check_statement, parse_bundle
from .encoding import b64decode_std
from .errors import MalformedSignature, PayloadDigestMismatch
from .locate import layers_of, read_blob, read_manifest, referrers
from .simplesigning import parse_payload

LEGACY, OCI11, BUNDLE = "cosign legacy", "cosign OCI 1.1", "cosign bundle"


@dataclass(frozen=True)
class Candidate:
    """One signature to check; ``check_payload`` runs only after the signature verified."""

    format: str
    where: str
    manifest: Digest
    signature: bytes
    signed_data: bytes
    check_payload: Callable[[], None]


def check_simple_signing(payload: bytes, digest: Digest) -> None:
    named = parse_payload(payload).manifest_digest
    if named != str(digest):
        raise PayloadDigestMismatch(f"signed payload names {named}, not the image digest {digest}")


def _simple_signing_candidates(store: Store, fmt: str, desc: Descriptor, where: str, digest: Digest
                               ) -> list[Candidate]:
    doc = read_manifest(store, desc, where)
    layers = [layer for layer in layers_of(doc, where) if layer.media_type == c.SIMPLE_SIGNING]
    if not layers:
        raise MalformedSignature(f"{where} has no {c.SIMPLE_SIGNING} layer")
    out: list[Candidate] = []
    for layer in layers:
        encoded = layer.annotations.get(c.COSIGN_SIGNATURE_ANNOTATION)
        if encoded is None:
            raise MalformedSignature(f"{where}: layer {layer.digest} has no {c.COSIGN_SIGNATURE_ANNOTATION} annotation")
        signature = b64decode_std(encoded, f"{where}: signature annotation")
        payload = read_blob(store, layer, f"{where} payload")
        out.append(Candidate(fmt, where, desc.digest, signature, payload,
                             partial(check_simple_signing, payload, digest)))
    return out


def legacy_candidates(store: Store, digest: Digest) -> list[Candidate]:
    tag = legacy_signature_tag(digest)
    desc = store.lookup(tag)
    if desc is None:
        return []
    return _simple_signing_candidates(store, LEGACY, desc, f"signature {tag}", digest)


def oci11_candidates(store: Store, digest: Digest) -> list[Candidate]:
    out: list[Candidate] = []
    for ref in referrers(store, digest, c.COSIGN_SIG_ARTIFACT):
        where = f"OCI 1.1 signature {ref.desc.digest}"
        out.extend(_simple_signing_candidates(store, OCI11, ref.desc, where, digest))
    return out


def bundle_candidates(store: Store, digest: Digest) -> list[Candidate]:
    out: list[Candidate] = []
    for ref in referrers(store, digest, c.BUNDLE_V03):
        where = f"bundle {ref.desc.digest}"
        layers = [la for la in layers_of(read_manifest(store, ref.desc, where), where)
                  if la.media_type in (c.BUNDLE_V03, c.BUNDLE_V03_ALT)]
        if not layers:
            raise MalformedSignature(f"{where} has no {c.BUNDLE_V03} layer")
        for layer in layers:
            parsed = parse_bundle(read_blob(store, layer, where))
            out.append(Candidate(BUNDLE, where, ref.desc.digest, parsed.signature, parsed.signed_data,
                                 partial(check_statement, parsed.statement, digest)))
    return out


FORMATS: tuple[tuple[str, Callable[[Store, Digest], list[Candidate]]], ...] = (
    (LEGACY, legacy_candidates),
    (OCI11, oci11_candidates),
    (BUNDLE, bundle_candidates),
)
