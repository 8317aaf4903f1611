"""Builders shared by the signature tests: the stored image handle and notation JWS/PKI makers."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.descriptor import Descriptor, canonical_json
from gadgetstore.engine.signatures import constants as c
from gadgetstore.engine.store import Store


@dataclass
class Image:
    store: Store
    ref: str  # normalised and tagged: ghcr.io/inspektor-gadget/gadget/trace_demo:latest
    root: Descriptor

    @property
    def repository(self) -> str:
        """The reference without its tag, as cosign's ``docker-reference`` names it."""
        return self.ref.rpartition(":")[0]


NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SUBJECT = "CN=gadgets.example, O=Notary, L=Seattle, ST=WA, C=US"


def make_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "WA"),
                      x509.NameAttribute(NameOID.LOCALITY_NAME, "Seattle"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Notary"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(cn: str, key: Any, issuer: x509.Certificate | None, issuer_key: Any, *, ca: bool,
          valid: tuple[datetime, datetime] = (NOW - timedelta(days=1), NOW + timedelta(days=1))) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(make_name(cn))
               .issuer_name(issuer.subject if issuer else make_name(cn)).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(valid[0]).not_valid_after(valid[1])
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # certSign, crlSign
        builder = builder.add_extension(usage, True)
    else:
        usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)  # digitalSignature
        builder = builder.add_extension(usage, True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    """A test CA and a code-signing leaf it issued."""

    ca_key: rsa.RSAPrivateKey
    ca: x509.Certificate
    leaf_key: rsa.RSAPrivateKey
    leaf: x509.Certificate


def make_pki() -> Pki:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = make_cert("Test CA", ca_key, None, ca_key, ca=True)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Pki(ca_key, ca, leaf_key, make_cert("gadgets.example", leaf_key, ca, ca_key, ca=False))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_jws(key: Any, chain: list[x509.Certificate], target: dict[str, Any], *, alg: str = "PS256",
             expiry: datetime | None = None, extra: dict[str, Any] | None = None) -> bytes:
    protected: dict[str, Any] = {"alg": alg, "crit": ["io.cncf.notary.signingScheme"],
                                 "cty": "application/vnd.cncf.notary.payload.v1+json",
                                 "io.cncf.notary.signingScheme": "notary.x509",
                                 "io.cncf.notary.signingTime": (NOW - timedelta(hours=1)).isoformat()}
    if expiry is not None:
        protected["crit"].append("io.cncf.notary.expiry")
        protected["io.cncf.notary.expiry"] = expiry.isoformat()
    protected.update(extra or {})
    header_b64 = b64url(json.dumps(protected).encode())
    payload_b64 = b64url(json.dumps({"targetArtifact": target}).encode())
    signing_input = f"{header_b64}.{payload_b64}".encode()
    hash_alg = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PSS(padding.MGF1(hash_alg), hash_alg.digest_size), hash_alg)
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hash_alg)))
        size = (key.curve.key_size + 7) // 8
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode() for cert in chain]
    return json.dumps({"payload": payload_b64, "protected": header_b64,
                       "header": {"x5c": x5c, "io.cncf.notary.signingAgent": "gadgetstore-tests"},
                       "signature": b64url(signature)}).encode()


def target_of(image: Image) -> dict[str, Any]:
    return {"mediaType": image.root.media_type, "digest": str(image.root.digest), "size": image.root.size}


def attach(image: Image, envelope: bytes, *, config_variant: bool = False, media_type: str = c.JWS_ENVELOPE) -> None:
    """Pin a notation signature manifest in either of the two shapes notation has written."""
    store = image.store
    layer = {"mediaType": media_type, "digest": str(store.blobs.put(envelope)), "size": len(envelope)}
    store.blobs.put(c.EMPTY_JSON)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
    if config_variant:
        doc["config"] = {"mediaType": c.NOTATION_ARTIFACT, "digest": str(c.EMPTY_JSON_DIGEST), "size": 2}
    else:
        doc["artifactType"] = c.NOTATION_ARTIFACT
        doc["config"] = {"mediaType": mt.OCI_EMPTY, "digest": str(c.EMPTY_JSON_DIGEST), "size": 2, "data": "e30="}
    doc.update(layers=[layer], subject=image.root.bare().to_json(),
               annotations={"org.opencontainers.image.created": "2026-06-01T11:00:00Z"})
    data = canonical_json(doc)
    with store.transaction() as txn:
        txn.pin(Descriptor(mt.OCI_MANIFEST, store.blobs.put(data), len(data)))


def policy(level: str = "strict", identities: list[str] | None = None, **overrides: Any) -> str:
    doc: dict[str, Any] = {"name": "p", "registryScopes": ["*"], "signatureVerification": {"level": level},
                           "trustStores": ["ca:test"], "trustedIdentities": identities or [f"x509.subject: {SUBJECT}"]}
    doc.update(overrides)
    return json.dumps({"version": "1.0", "trustPolicies": [doc]})
