"""Private keys: generation (``key generate``), loading, and signing in cosign's conventions."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ..userpath import input_name, read_input, replaces_regular_file, write_output
from .errors import InvalidKey
from .keys import PublicKey

SigningKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]  # noqa: UP007
KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa", "ed25519")
RSA_BITS = 3072
MAX_KEY_BYTES = 1024 * 1024


def generate_private_key(kind: str = "ecdsa-p256", rsa_bits: int = RSA_BITS) -> SigningKey:
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise InvalidKey(f"unknown key type {kind!r}; choose one of {', '.join(KEY_TYPES)}")


def private_pem(key: SigningKey) -> bytes:
    """Unencrypted PKCS#8, so any tool (openssl, cosign import-key-pair) can read it."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: SigningKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def write_key_pair(prefix: Path, key: SigningKey, force: bool = False) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (a new regular file is 0600) and ``PREFIX.pub``, as paths the user names.

    A regular file in place (also behind a symlink) needs ``force``; a device or FIFO is written into.
    Both are checked before either is written, so a refusal writes nothing.
    """
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (key_path, pub_path):
        if replaces_regular_file(path) and not force:
            raise InvalidKey(f"{path} already exists; use --force to replace it")
    write_output(key_path, private_pem(key), 0o600)
    write_output(pub_path, public_pem(key), 0o644)
    return key_path, pub_path


def load_private_key(path: Path) -> SigningKey:
    """The key at ``path`` (``-``: standard input)."""
    data = read_input(path, "private key", MAX_KEY_BYTES, InvalidKey)
    where = input_name(path)
    if b"ENCRYPTED SIGSTORE PRIVATE KEY" in data or b"ENCRYPTED COSIGN PRIVATE KEY" in data:
        raise InvalidKey(f"{where} is a password-encrypted cosign key; only unencrypted PKCS#8/PEM keys are supported")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InvalidKey(f"{where} is password-protected; only unencrypted keys are supported") from None
    except (ValueError, UnsupportedAlgorithm) as err:
        raise InvalidKey(f"cannot load private key {where}: {err}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise InvalidKey(f"{where}: unsupported private key type {type(key).__name__}")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in ("secp256r1", "secp384r1"):
        raise InvalidKey(f"{where}: unsupported elliptic curve {key.curve.name}")
    return key


def sign_bytes(key: SigningKey, data: bytes) -> bytes:
    """The signature ig's verifier expects: SHA-256 for ECDSA (DER) and RSA (PKCS#1 v1.5)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def public_key_of(key: SigningKey) -> PublicKey:
    return PublicKey(key.public_key())
