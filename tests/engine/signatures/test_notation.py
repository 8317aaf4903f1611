"""Notation JWS envelopes built here with a test CA and leaf, verified against trust policies."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.signatures import constants as c
from gadgetstore.engine.signatures.errors import (
    CertificateError,
    MalformedSignature,
    NoSignatureFound,
    PayloadDigestMismatch,
    SignatureExpired,
    SignatureMismatch,
    TrustPolicyError,
)
from gadgetstore.engine.signatures.notation import NotationOptions, load_certificates
from gadgetstore.engine.signatures.verify import verify_image

from .helpers import NOW, Image, Pki, attach, b64url, make_cert, make_jws, make_pki, policy, target_of


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def verify(image: Image, certs: list[x509.Certificate], doc: str, now: datetime = NOW) -> Any:
    pems = [cert.public_bytes(serialization.Encoding.PEM).decode() for cert in certs]
    return verify_image(image.store, image.ref, [], NotationOptions(load_certificates([",".join(pems)]), doc), now)


@pytest.mark.parametrize("config_variant", [False, True])
def test_ca_signed_leaf_verifies(image: Image, pki: Pki, config_variant: bool) -> None:
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image)), config_variant=config_variant)
    result = verify(image, [pki.ca], policy())
    assert result.method == "notation" and result.digest == image.root.digest
    assert result.signer.startswith("CN=gadgets.example")


def test_self_signed_ecdsa_leaf_trusted_directly(image: Image) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    leaf = make_cert("gadgets.example", key, None, key, ca=False)
    attach(image, make_jws(key, [leaf], target_of(image), alg="ES384"))
    assert verify(image, [leaf], policy(identities=["*"])).method == "notation"


def test_expired_certificate(image: Image, pki: Pki) -> None:
    old = (NOW - timedelta(days=30), NOW - timedelta(days=2))
    leaf = make_cert("gadgets.example", pki.leaf_key, pki.ca, pki.ca_key, ca=False, valid=old)
    attach(image, make_jws(pki.leaf_key, [leaf, pki.ca], target_of(image)))
    with pytest.raises(CertificateError, match=r"signing certificate CN=gadgets\.example.* expired on"):
        verify(image, [pki.ca], policy())
    result = verify(image, [pki.ca], policy("permissive"))
    assert any("expired on" in w for w in result.warnings)


def test_signature_expiry(image: Image, pki: Pki) -> None:
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image), expiry=NOW - timedelta(minutes=1)))
    with pytest.raises(SignatureExpired, match="notation signature expired on"):
        verify(image, [pki.ca], policy())
    assert verify(image, [pki.ca], policy(), now=NOW - timedelta(minutes=5)).method == "notation"


def test_untrusted_chain(image: Image, pki: Pki) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_ca = make_cert("Other CA", other_key, None, other_key, ca=True)
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image)))
    with pytest.raises(CertificateError, match="does not lead to any of the notation certificates"):
        verify(image, [other_ca], policy())


def test_chain_out_of_order(image: Image, pki: Pki) -> None:
    attach(image, make_jws(pki.leaf_key, [pki.ca, pki.leaf], target_of(image)))
    with pytest.raises((CertificateError, MalformedSignature, SignatureMismatch)):
        verify(image, [pki.ca], policy())


def test_tampered_payload(image: Image, pki: Pki) -> None:
    envelope = json.loads(make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image)))
    forged = dict(target_of(image), annotations={"x": "y"})
    envelope["payload"] = b64url(json.dumps({"targetArtifact": forged}).encode())
    attach(image, json.dumps(envelope).encode())
    with pytest.raises(SignatureMismatch, match="tampered envelope or payload"):
        verify(image, [pki.ca], policy())


@pytest.mark.parametrize(("field", "value", "message"), [
    ("digest", "sha256:" + "0" * 64, "names sha256:0000"),
    ("size", 1, "payload size 1 differs"),
    ("mediaType", mt.OCI_MANIFEST, "media type"),
])
def test_target_artifact_mismatch(image: Image, pki: Pki, field: str, value: Any, message: str) -> None:
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], dict(target_of(image), **{field: value})))
    with pytest.raises(PayloadDigestMismatch, match=message):
        verify(image, [pki.ca], policy())


def test_trusted_identities(image: Image, pki: Pki) -> None:
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image)))
    with pytest.raises(CertificateError, match="not a trusted identity"):
        verify(image, [pki.ca], policy(identities=["x509.subject: CN=someone.else, O=Notary, C=US"]))
    assert verify(image, [pki.ca], policy(identities=["x509.subject: C=US, O=Notary, CN=gadgets.example"]))


def test_alg_must_match_the_certificate_key(image: Image, pki: Pki) -> None:
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image), alg="PS384"))
    with pytest.raises(MalformedSignature, match="does not match the signing certificate key"):
        verify(image, [pki.ca], policy())


def test_unknown_critical_header(image: Image, pki: Pki) -> None:
    extra = {"crit": ["io.cncf.notary.signingScheme", "x-unknown"], "x-unknown": 1}
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image), extra=extra))
    with pytest.raises(MalformedSignature, match="unsupported headers critical"):
        verify(image, [pki.ca], policy())


def test_cose_envelope_is_reported_unsupported(image: Image, pki: Pki) -> None:
    attach(image, b"\xd2\x84", media_type=c.COSE_ENVELOPE)
    with pytest.raises(MalformedSignature, match="COSE is not supported"):
        verify(image, [pki.ca], policy())


@pytest.mark.parametrize(("doc", "message"), [
    ("not json", "not valid JSON"),
    (json.dumps({"version": "2.0", "trustPolicies": []}), "version"),
    (policy("audit"), "level 'audit' is not supported"),
    (policy(trustStores=["ca:a", "ca:b"]), "exactly one trust store"),
    (policy(trustStores=["signingAuthority:a"]), "only 'ca:' trust stores"),
    (policy(registryScopes=["ghcr.io/other/repo"]), "no notation trust policy applies"),
])
def test_policy_errors(image: Image, pki: Pki, doc: str, message: str) -> None:
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image)))
    with pytest.raises(TrustPolicyError, match=message):
        verify(image, [pki.ca], doc)


def test_registry_scope_naming_the_repository(image: Image, pki: Pki) -> None:
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image)))
    doc = policy(registryScopes=[image.repository])
    assert verify(image, [pki.ca], doc).method == "notation"


def test_no_notation_signature(image: Image, pki: Pki) -> None:
    with pytest.raises(NoSignatureFound, match="no notation signature"):
        verify(image, [pki.ca], policy())


def test_notation_succeeds_when_cosign_finds_nothing(image: Image, pki: Pki) -> None:
    """As in ig: the default cosign key runs too, and any verifier succeeding is enough."""
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image)))
    options = NotationOptions([pki.ca], policy())
    assert verify_image(image.store, image.ref, None, options, NOW).method == "notation"
    with pytest.raises(CertificateError, match=r"cosign: no cosign signature.*; notation: .*expired"):
        verify_image(image.store, image.ref, None, options, NOW + timedelta(days=5))


@pytest.mark.parametrize("envelope", [
    b"[" * 100_000,
    b'{"payload":"e30","protected":"e30","signature":"","header":{"x5c":["AAAA"]}}',
    b'{"payload":"e30","protected":"e30","signature":"","header":{"x5c":[]}}',
    b'{"payload":"e30","protected":"e30","signature":"","header":"x"}',
    b'{"payload":"***","protected":"e30","signature":"","header":{}}',
])
def test_hostile_envelopes(image: Image, pki: Pki, envelope: bytes) -> None:
    attach(image, envelope)
    with pytest.raises(MalformedSignature):
        verify(image, [pki.ca], policy())


def test_hostile_protected_header(image: Image, pki: Pki) -> None:
    attach(image, make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(image), extra={"crit": [{"a": 1}]}))
    with pytest.raises(MalformedSignature, match="'crit' must be a list of header names"):
        verify(image, [pki.ca], policy())
