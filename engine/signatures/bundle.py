"""Sigstore bundle v0.3 with a DSSE envelope over an in-toto Statement naming the image.

ig (and this module) check only the envelope signature and the statement subject: no
transparency-log entries, certificates or timestamps are verified.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from ..descriptor import canonical_json
from ..digest import Digest
from . import constants as c
from .dsse import Envelope, envelope_json, pae, parse_envelope
from .encoding import json_object
from .errors import MalformedSignature, PayloadDigestMismatch


@dataclass(frozen=True)
class BundleSignature:
    """What to verify: ``signature`` over ``signed_data`` (the PAE), plus the statement it covers."""

    signature: bytes
    signed_data: bytes
    statement: bytes


def parse_bundle(data: bytes) -> BundleSignature:
    doc = json_object(data, "Sigstore bundle")
    media_type = doc.get("mediaType")
    if media_type is not None and not (isinstance(media_type, str)
                                       and media_type.startswith("application/vnd.dev.sigstore.bundle")):
        raise MalformedSignature(f"Sigstore bundle has unexpected mediaType {media_type!r}")
    if "dsseEnvelope" not in doc:
        raise MalformedSignature("Sigstore bundle has no dsseEnvelope (message-signature bundles are not supported)")
    envelope: Envelope = parse_envelope(doc["dsseEnvelope"])
    if envelope.payload_type != c.IN_TOTO_PAYLOAD_TYPE:
        raise MalformedSignature(
            f"DSSE payloadType is {envelope.payload_type!r}, expected {c.IN_TOTO_PAYLOAD_TYPE!r}")
    if len(envelope.signatures) != 1:
        raise MalformedSignature(f"DSSE envelope must hold exactly one signature, it holds {len(envelope.signatures)}")
    return BundleSignature(envelope.signatures[0], pae(envelope.payload_type, envelope.payload), envelope.payload)


def check_statement(statement: bytes, digest: Digest) -> None:
    """The in-toto Statement must name the image digest among its subjects."""
    doc = json_object(statement, "in-toto statement")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise MalformedSignature("in-toto statement has no subject")
    named: list[str] = []
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digests, dict):
            raise MalformedSignature("in-toto statement subject has no digest map")
        for alg, hexpart in digests.items():
            named.append(f"{alg}:{hexpart}")
    if str(digest) not in named:
        raise PayloadDigestMismatch(
            f"bundle statement names {', '.join(named)}, not the image digest {digest}")


def build_statement(digest: Digest) -> bytes:
    """The statement ``cosign sign --new-bundle-format`` writes (subject digest, no name, no predicate)."""
    return canonical_json({
        "_type": c.IN_TOTO_STATEMENT_V1,
        "subject": [{"digest": {digest.algorithm: digest.hex}}],
        "predicateType": c.COSIGN_SIGN_PREDICATE,
    })


def build_bundle(statement: bytes, signature: bytes, public_key_der: bytes) -> bytes:
    """A v0.3 bundle without transparency-log entries; the key hint is the SPKI's SHA-256."""
    hint = base64.b64encode(hashlib.sha256(public_key_der).digest()).decode()
    bundle: dict[str, Any] = {
        "mediaType": c.BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": hint}},
        "dsseEnvelope": envelope_json(c.IN_TOTO_PAYLOAD_TYPE, statement, signature),
    }
    return canonical_json(bundle)
