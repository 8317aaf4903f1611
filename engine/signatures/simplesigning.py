"""cosign's "simple signing" payload: the signed JSON naming the image's manifest digest.

Written byte for byte as cosign writes it (Go ``json.Marshal`` of its struct: compact, this key
order, ``"optional":null`` when there are no annotations)::

    {"critical":{"identity":{"docker-reference":"<repo>"},
                 "image":{"docker-manifest-digest":"sha256:<hex>"},
                 "type":"cosign container image signature"},
     "optional":null}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..descriptor import canonical_json
from ..digest import Digest
from . import constants as c
from .encoding import json_object
from .errors import MalformedSignature


@dataclass(frozen=True)
class SimpleSigningPayload:
    docker_reference: str
    manifest_digest: str
    type: str
    optional: dict[str, Any] | None


def build_payload(docker_reference: str, digest: Digest, optional: dict[str, str] | None = None) -> bytes:
    return canonical_json({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": str(digest)},
            "type": c.SIMPLE_SIGNING_TYPE,
        },
        "optional": optional or None,
    })


def parse_payload(data: bytes) -> SimpleSigningPayload:
    """Only ``critical.image.docker-manifest-digest`` is trusted later; the rest is informative."""
    doc = json_object(data, "simple signing payload")
    critical = doc.get("critical")
    if not isinstance(critical, dict):
        raise MalformedSignature("simple signing payload has no 'critical' object")
    image = critical.get("image")
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(digest, str):
        raise MalformedSignature("simple signing payload has no critical.image.docker-manifest-digest")
    identity = critical.get("identity")
    ref = identity.get("docker-reference") if isinstance(identity, dict) else None
    kind = critical.get("type")
    optional = doc.get("optional")
    return SimpleSigningPayload(
        docker_reference=ref if isinstance(ref, str) else "",
        manifest_digest=digest,
        type=kind if isinstance(kind, str) else "",
        optional=optional if isinstance(optional, dict) else None,
    )
