"""Notation's JWS envelope (JSON serialisation, RFC 7515) and its signature check.

Envelope: ``{"payload", "protected", "header": {"x5c": [...]}, "signature"}``; the signature is over
``ASCII(protected) "." ASCII(payload)`` (both base64url), made with the key of ``x5c[0]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from . import constants as c
from .encoding import b64decode_std, b64decode_url, json_object
from .errors import MalformedSignature, SignatureMismatch

SIGNING_SCHEME = "io.cncf.notary.signingScheme"
EXPIRY = "io.cncf.notary.expiry"
AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
VERIFICATION_PLUGIN = "io.cncf.notary.verificationPlugin"
VERIFICATION_PLUGIN_MIN_VERSION = "io.cncf.notary.verificationPluginMinVersion"
KNOWN_CRITICAL = {SIGNING_SCHEME, EXPIRY, AUTHENTIC_SIGNING_TIME, VERIFICATION_PLUGIN, VERIFICATION_PLUGIN_MIN_VERSION}

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512,
}
# Notation derives the algorithm from the certificate key; anything else is refused.
_RSA_ALG = {2048: "PS256", 3072: "PS384", 4096: "PS512"}
_EC_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_EC_SIZE = {"ES256": 32, "ES384": 48, "ES512": 66}


@dataclass(frozen=True)
class JwsEnvelope:
    protected: dict[str, Any]
    payload: dict[str, Any]
    certificates: list[x509.Certificate]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.protected.get("alg", ""))

    def time_header(self, name: str) -> datetime | None:
        value = self.protected.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise MalformedSignature(f"JWS header {name} is not a string")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise MalformedSignature(f"JWS header {name} is not an RFC 3339 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise MalformedSignature(f"JWS header {name} has no time zone: {value!r}")
        return parsed


def parse_jws(data: bytes) -> JwsEnvelope:
    doc = json_object(data, "JWS envelope")
    protected_b64, payload_b64 = doc.get("protected"), doc.get("payload")
    protected_raw = b64decode_url(protected_b64, "JWS protected header")
    payload_raw = b64decode_url(payload_b64, "JWS payload")
    signature = b64decode_url(doc.get("signature"), "JWS signature")
    protected = json_object(protected_raw, "JWS protected header")
    payload = json_object(payload_raw, "JWS payload")
    header = doc.get("header")
    if not isinstance(header, dict):
        raise MalformedSignature("JWS envelope has no unprotected header")
    overlap = set(header) & set(protected)
    if overlap:
        raise MalformedSignature(f"JWS header fields both protected and unprotected: {', '.join(sorted(overlap))}")
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain:
        raise MalformedSignature("JWS envelope has no x5c certificate chain")
    certs: list[x509.Certificate] = []
    for i, item in enumerate(chain):
        try:
            certs.append(x509.load_der_x509_certificate(b64decode_std(item, f"x5c[{i}]")))
        except ValueError:
            raise MalformedSignature(f"x5c[{i}] is not a DER certificate") from None
    _check_protected(protected)
    signing_input = f"{protected_b64}.{payload_b64}".encode()
    return JwsEnvelope(protected, payload, certs, signing_input, signature)


def _check_protected(protected: dict[str, Any]) -> None:
    if protected.get("cty") != c.NOTATION_PAYLOAD:
        raise MalformedSignature(f"JWS content type is {protected.get('cty')!r}, expected {c.NOTATION_PAYLOAD!r}")
    crit = protected.get("crit")
    if not isinstance(crit, list) or not all(isinstance(n, str) for n in crit) or SIGNING_SCHEME not in crit:
        raise MalformedSignature(f"JWS 'crit' must be a list of header names including {SIGNING_SCHEME}")
    unknown = [name for name in crit if name not in KNOWN_CRITICAL]
    if unknown:
        raise MalformedSignature(f"JWS marks unsupported headers critical: {unknown}")
    missing = [name for name in crit if name not in protected]
    if missing:
        raise MalformedSignature(f"JWS 'crit' names absent headers: {missing}")
    scheme = protected.get(SIGNING_SCHEME)
    if scheme != "notary.x509":
        raise MalformedSignature(f"unsupported notation signing scheme {scheme!r} (only notary.x509)")
    if VERIFICATION_PLUGIN in protected:
        raise MalformedSignature("signatures that need a notation verification plugin are not supported")


def expected_alg(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size in _RSA_ALG:
        return _RSA_ALG[key.key_size]
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _EC_ALG:
        return _EC_ALG[key.curve.name]
    raise MalformedSignature(f"signing certificate key {type(key).__name__} is not allowed by notation")


def verify_jws_signature(env: JwsEnvelope) -> None:
    """The envelope's signature must verify with the leaf certificate's key, with the matching alg."""
    leaf = env.certificates[0]
    alg = expected_alg(leaf)
    if env.alg != alg:
        raise MalformedSignature(f"JWS alg {env.alg!r} does not match the signing certificate key ({alg})")
    hash_cls = _HASHES[alg[2:]]
    key = leaf.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(env.signature, env.signing_input,
                       padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=padding.PSS.DIGEST_LENGTH),
                       hash_cls())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            size = _EC_SIZE[alg]
            if len(env.signature) != 2 * size:
                raise InvalidSignature
            r = int.from_bytes(env.signature[:size], "big")
            s = int.from_bytes(env.signature[size:], "big")
            key.verify(encode_dss_signature(r, s), env.signing_input, ec.ECDSA(hash_cls()))
        else:  # pragma: no cover - expected_alg refused it
            raise InvalidSignature
    except InvalidSignature:
        raise SignatureMismatch("notation JWS signature does not verify with its signing certificate "
                                "(tampered envelope or payload)") from None
