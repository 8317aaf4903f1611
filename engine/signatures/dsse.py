"""DSSE envelopes (secure-systems-lab/dsse v1): what is signed is PAE(payloadType, payload)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from .encoding import b64decode_any
from .errors import MalformedSignature


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: ``DSSEv1 SP len(type) SP type SP len(body) SP body``."""
    type_bytes = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: list[bytes]


def parse_envelope(obj: Any) -> Envelope:
    if not isinstance(obj, dict):
        raise MalformedSignature("DSSE envelope is not a JSON object")
    payload_type = obj.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise MalformedSignature("DSSE envelope has no payloadType")
    payload = b64decode_any(obj.get("payload"), "DSSE payload")
    raw_sigs = obj.get("signatures")
    if not isinstance(raw_sigs, list):
        raise MalformedSignature("DSSE envelope has no signatures list")
    sigs: list[bytes] = []
    for i, entry in enumerate(raw_sigs):
        if not isinstance(entry, dict):
            raise MalformedSignature(f"DSSE signatures[{i}] is not an object")
        sigs.append(b64decode_any(entry.get("sig"), f"DSSE signatures[{i}].sig"))
    return Envelope(payload_type, payload, sigs)


def envelope_json(payload_type: str, payload: bytes, signature: bytes) -> dict[str, Any]:
    """The protobuf-JSON shape Sigstore bundles carry (standard base64, one signature)."""
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": payload_type,
        "signatures": [{"sig": base64.b64encode(signature).decode()}],
    }
