"""Pure format modules: PAE, simple signing, bundles, base64 strictness, key loading."""

from __future__ import annotations

import base64
import json

import pytest

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.signatures import constants as c
from gadgetstore.engine.signatures.bundle import build_bundle, build_statement, check_statement, parse_bundle
from gadgetstore.engine.signatures.dsse import pae
from gadgetstore.engine.signatures.encoding import b64decode_any, b64decode_std, b64decode_url
from gadgetstore.engine.signatures.errors import InvalidKey, MalformedSignature, PayloadDigestMismatch
from gadgetstore.engine.signatures.keys import (
    DEFAULT_PUBLIC_KEY_PEM,
    default_public_keys,
    load_public_key,
    load_public_keys,
    split_pem_list,
)
from gadgetstore.engine.signatures.signing_keys import SigningKey, public_key_of, public_pem, sign_bytes
from gadgetstore.engine.signatures.simplesigning import build_payload, parse_payload

DIGEST = Digest.parse("sha256:" + "ab" * 32)


def test_pae_matches_the_dsse_specification_example() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")
    assert pae("t", b"") == b"DSSEv1 1 t 0 "


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("é", "ü".encode()) == "DSSEv1 2 é 2 ü".encode()


def test_simple_signing_payload_is_byte_identical_to_cosign_layout() -> None:
    payload = build_payload("ttl.sh/x", DIGEST)
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"ttl.sh/x"},"image":{"docker-manifest-digest":"sha256:'
        + b"ab" * 32 + b'"},"type":"cosign container image signature"},"optional":null}')
    parsed = parse_payload(payload)
    assert (parsed.docker_reference, parsed.manifest_digest) == ("ttl.sh/x", str(DIGEST))
    assert parsed.type == c.SIMPLE_SIGNING_TYPE
    assert parse_payload(build_payload("r", DIGEST, {"k": "v"})).optional == {"k": "v"}


@pytest.mark.parametrize("payload", [
    b"[]", b"{}", b'{"critical":{}}', b'{"critical":{"image":{"docker-manifest-digest":1}}}', b"not json", b"\xff",
])
def test_simple_signing_payload_refuses_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedSignature):
        parse_payload(payload)


def test_base64_decoders_are_strict() -> None:
    assert b64decode_std("aGk=", "x") == b"hi"
    assert b64decode_url("aGk", "x") == b"hi"
    assert b64decode_any("aGk", "x") == b"hi"
    assert b64decode_any("-_8=", "x") == b"\xfb\xff"
    for bad in ("aGk", "aG k=", "a===", "****", 5, None):
        with pytest.raises(MalformedSignature):
            b64decode_std(bad, "x")
    for bad in ("a", "a+b/", "!!"):
        with pytest.raises(MalformedSignature):
            b64decode_url(bad, "x")
    with pytest.raises(MalformedSignature):
        b64decode_any("%%%%", "x")


def _bundle(keys: dict[str, SigningKey], **envelope_overrides: object) -> bytes:
    key = keys["ecdsa-p256"]
    statement = build_statement(DIGEST)
    signature = sign_bytes(key, pae(c.IN_TOTO_PAYLOAD_TYPE, statement))
    doc = json.loads(build_bundle(statement, signature, public_key_of(key).der))
    doc["dsseEnvelope"].update(envelope_overrides)
    return json.dumps(doc).encode()


def test_bundle_round_trip_and_statement_shape(keys: dict[str, SigningKey]) -> None:
    data = _bundle(keys)
    doc = json.loads(data)
    assert doc["mediaType"] == c.BUNDLE_V03
    assert set(doc) == {"mediaType", "verificationMaterial", "dsseEnvelope"}
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    assert statement == {"_type": "https://in-toto.io/Statement/v1",
                         "subject": [{"digest": {"sha256": DIGEST.hex}}],
                         "predicateType": "https://sigstore.dev/cosign/sign/v1"}
    parsed = parse_bundle(data)
    assert public_key_of(keys["ecdsa-p256"]).verify(parsed.signature, parsed.signed_data)
    check_statement(parsed.statement, DIGEST)
    with pytest.raises(PayloadDigestMismatch, match="not the image digest"):
        check_statement(parsed.statement, Digest.parse("sha256:" + "cd" * 32))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"payloadType": "text/plain"}, "payloadType is 'text/plain'"),
    ({"signatures": []}, "exactly one signature, it holds 0"),
    ({"signatures": [{"sig": "AAAA"}, {"sig": "AAAA"}]}, "exactly one signature, it holds 2"),
    ({"signatures": [{"sig": "%%%not base64%%%"}]}, "not valid base64"),
    ({"payload": "!!!"}, "DSSE payload is not valid base64"),
    ({"signatures": "AAAA"}, "no signatures list"),
])
def test_hostile_bundles_are_refused(keys: dict[str, SigningKey], overrides: dict[str, object], message: str) -> None:
    with pytest.raises(MalformedSignature, match=message):
        parse_bundle(_bundle(keys, **overrides))


def test_bundle_without_envelope_or_with_foreign_media_type() -> None:
    with pytest.raises(MalformedSignature, match="no dsseEnvelope"):
        parse_bundle(b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{}}')
    with pytest.raises(MalformedSignature, match="unexpected mediaType"):
        parse_bundle(b'{"mediaType":"text/html","dsseEnvelope":{}}')
    with pytest.raises(MalformedSignature):
        parse_bundle(b"[1]")


@pytest.mark.parametrize("statement", [b'{"subject":[]}', b'{"subject":[{"name":"x"}]}', b"{}", b"nope"])
def test_statement_without_subject_digest_is_malformed(statement: bytes) -> None:
    with pytest.raises(MalformedSignature):
        check_statement(statement, DIGEST)


def test_every_key_type_signs_and_verifies_with_sha256(keys: dict[str, SigningKey]) -> None:
    for kind, key in keys.items():
        pub = load_public_key(public_pem(key))
        signature = sign_bytes(key, b"data")
        assert pub.verify(signature, b"data"), kind
        assert not pub.verify(signature, b"datA"), kind
        assert not pub.verify(signature[:-3], b"data"), kind
        assert not pub.verify(b"", b"data"), kind


def test_default_key_is_inspektor_gadgets_p256_key() -> None:
    (key,) = default_public_keys()
    assert str(key).startswith("ECDSA P-256 key SHA256:")
    assert load_public_keys([DEFAULT_PUBLIC_KEY_PEM + "," + DEFAULT_PUBLIC_KEY_PEM]) == [key, key]


def test_public_key_list_parsing(keys: dict[str, SigningKey]) -> None:
    pems = [public_pem(k).decode() for k in keys.values()]
    assert len(split_pem_list(",".join(pems))) == 4
    assert len(load_public_keys([",".join(pems[:2]), pems[2]])) == 3
    assert load_public_keys(["", " , "]) == []
    with pytest.raises(InvalidKey, match="inline"):
        load_public_keys(["/path/to/key.pub"])
    with pytest.raises(InvalidKey, match="cannot load public key"):
        load_public_keys(["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"])
