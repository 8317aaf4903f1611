"""Public keys as cosign and ig use them: PEM SubjectPublicKeyInfo, SHA-256 for every key type.

ig loads each key with sigstore's ``LoadVerifier(pub, SHA256)``: ECDSA (ASN.1 DER signature over
SHA-256), RSA PKCS#1 v1.5 with SHA-256, and Ed25519 over the message itself.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Union

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from .errors import InvalidKey

# Inspektor Gadget's published cosign key (pkg/resources/inspektor-gadget.pub), ECDSA P-256.
DEFAULT_PUBLIC_KEY_PEM = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEoDOC0gYSxZTopenGmX3ZFvQ1DSfh
Ir4EKRt5jC+mXaJ7c7J+oREskYMn/SfZdRHNSOjLTZUMDm60zpXGhkFecg==
-----END PUBLIC KEY-----
"""

VerifyingKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey]  # noqa: UP007
_PEM_BLOCK_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def describe_key(key: VerifyingKey) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    return "Ed25519"


@dataclass(frozen=True)
class PublicKey:
    """A trusted verification key; ``fingerprint`` (SHA-256 of the DER SPKI) names it in messages."""

    key: VerifyingKey

    @property
    def der(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def fingerprint(self) -> str:
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.der).digest()).decode().rstrip("=")

    def __str__(self) -> str:
        return f"{describe_key(self.key)} key {self.fingerprint}"

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` over ``data`` was made by this key (SHA-256 for ECDSA and RSA)."""
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            elif isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                self.key.verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


def load_public_key(pem: str | bytes) -> PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data.strip() + b"\n")
    except (ValueError, UnsupportedAlgorithm) as err:
        raise InvalidKey(f"cannot load public key: {err}") from None
    if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise InvalidKey(f"unsupported public key type {type(key).__name__}")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _CURVES:
        raise InvalidKey(f"unsupported elliptic curve {key.curve.name}")
    return PublicKey(key)


def split_pem_list(text: str) -> list[str]:
    """ig's ``--public-keys`` is comma-separated; PEM bodies never contain commas."""
    out: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue
        blocks = [m.group(0) for m in _PEM_BLOCK_RE.finditer(part)]
        if not blocks:
            raise InvalidKey("expected PEM text starting with '-----BEGIN' (keys are passed inline, not as paths)")
        out.extend(blocks)
    return out


def load_public_keys(values: list[str] | tuple[str, ...]) -> list[PublicKey]:
    return [load_public_key(pem) for value in values for pem in split_pem_list(value)]


def default_public_keys() -> list[PublicKey]:
    return [load_public_key(DEFAULT_PUBLIC_KEY_PEM)]
