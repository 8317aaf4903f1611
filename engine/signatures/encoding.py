"""Strict base64 and JSON decoding: hostile signature artifacts must fail with a clear message."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ..gojson import go_loads
from .errors import MalformedSignature

_STD_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_RE = re.compile(r"[A-Za-z0-9_-]*")
MAX_SIGNATURE_DOCUMENT = 1024 * 1024


def b64decode_std(text: object, what: str) -> bytes:
    """Standard base64 with padding (cosign annotations, DSSE, x5c); nothing else accepted."""
    if not isinstance(text, str) or not _STD_RE.fullmatch(text) or len(text) % 4:
        raise MalformedSignature(f"{what} is not valid base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSignature(f"{what} is not valid base64") from None


def b64decode_any(text: object, what: str) -> bytes:
    """protobuf JSON (Sigstore bundles) accepts standard or URL-safe base64, padded or not."""
    if not isinstance(text, str):
        raise MalformedSignature(f"{what} is not a base64 string")
    stripped = text.rstrip("=")
    if _URL_RE.fullmatch(stripped):
        return b64decode_url(stripped, what)
    return b64decode_std(stripped + "=" * (-len(stripped) % 4), what)


def b64decode_url(text: object, what: str) -> bytes:
    """base64url without padding (JWS, RFC 7515 §2)."""
    if not isinstance(text, str) or not _URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise MalformedSignature(f"{what} is not valid base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def json_object(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_SIGNATURE_DOCUMENT:
        raise MalformedSignature(f"{what} is larger than {MAX_SIGNATURE_DOCUMENT} bytes")
    try:
        obj = go_loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MalformedSignature(f"{what} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise MalformedSignature(f"{what} is not a JSON object")
    return obj
