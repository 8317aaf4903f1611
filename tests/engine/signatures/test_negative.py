"""Every way a signature can be wrong gives a specific error naming the failed check."""

from __future__ import annotations

import base64
import json
import os

import pytest

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine import reference
from gadgetstore.engine.descriptor import Descriptor, canonical_json
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.signatures import constants as c
from gadgetstore.engine.signatures.bundle import build_bundle, build_statement
from gadgetstore.engine.signatures.dsse import pae
from gadgetstore.engine.signatures.errors import (
    MalformedSignature,
    NoSignatureFound,
    PayloadDigestMismatch,
    SignatureBlobMissing,
    SignatureMismatch,
)
from gadgetstore.engine.signatures.sign import sign_image, simple_signing_manifest
from gadgetstore.engine.signatures.signing_keys import SigningKey, public_key_of, sign_bytes
from gadgetstore.engine.signatures.simplesigning import build_payload
from gadgetstore.engine.signatures.verify import verify_image
from gadgetstore.engine.store import Store

from .helpers import Image


def _manifest(store: Store, desc: Descriptor) -> dict[str, object]:
    return json.loads(store.blobs.read(desc.digest))


def _put(store: Store, doc: object) -> Descriptor:
    data = canonical_json(doc)
    return Descriptor(mt.OCI_MANIFEST, store.blobs.put(data), len(data))


def _retag_signature(image: Image, doc: object) -> None:
    with image.store.transaction() as txn:
        txn.tag(reference.legacy_signature_tag(image.root.digest), _put(image.store, doc))


def test_another_key(image: Image, keys: dict[str, SigningKey], other_key: SigningKey) -> None:
    sign_image(image.store, image.ref, other_key)
    with pytest.raises(SignatureMismatch, match="signed by another key"):
        verify_image(image.store, image.ref, [public_key_of(k) for k in keys.values()])


def test_image_manifest_changed_after_signing(image: Image, keys: dict[str, SigningKey]) -> None:
    key = keys["ecdsa-p256"]
    sign_image(image.store, image.ref, key)
    index = _manifest(image.store, image.root)
    index["annotations"] = {**index.get("annotations", {}), "tampered": "yes"}  # type: ignore[dict-item]
    changed = _put(image.store, index)
    changed = Descriptor(image.root.media_type, changed.digest, changed.size)
    with image.store.transaction() as txn:
        txn.tag(image.ref, changed)
    with pytest.raises(NoSignatureFound, match=str(changed.digest)):
        verify_image(image.store, image.ref, [public_key_of(key)])
    # The attacker also moves the old signature onto the new digest: its payload names the old one.
    old_sig = image.store.resolve(reference.legacy_signature_tag(image.root.digest))
    with image.store.transaction() as txn:
        txn.tag(reference.legacy_signature_tag(changed.digest), old_sig)
    expected = f"names {image.root.digest}, not the image digest {changed.digest}"
    with pytest.raises(PayloadDigestMismatch, match=expected):
        verify_image(image.store, image.ref, [public_key_of(key)])


def test_payload_naming_another_digest(image: Image, keys: dict[str, SigningKey]) -> None:
    key = keys["ed25519"]
    other = Digest.of_bytes(b"another image")
    payload = build_payload(image.repository, other)
    data = simple_signing_manifest(image.store, payload, sign_bytes(key, payload), c.OCI_CONFIG)
    _retag_signature(image, json.loads(data))
    with pytest.raises(PayloadDigestMismatch, match=f"signed payload names {other}"):
        verify_image(image.store, image.ref, [public_key_of(key)])


def test_payload_swapped_after_signing(image: Image, keys: dict[str, SigningKey]) -> None:
    """A new payload blob (naming the right digest) under the old signature: tampered payload."""
    key = keys["rsa"]
    signed = sign_image(image.store, image.ref, key)
    doc = _manifest(image.store, signed.signature)
    payload = build_payload("evil.example/x", image.root.digest)
    layer = doc["layers"][0]  # type: ignore[index]
    layer.update(digest=str(image.store.blobs.put(payload)), size=len(payload))
    _retag_signature(image, doc)
    with pytest.raises(SignatureMismatch, match="payload was tampered with"):
        verify_image(image.store, image.ref, [public_key_of(key)])


@pytest.mark.parametrize("mangle", [
    lambda s: s[: len(s) // 2],                                   # truncated, invalid base64 length
    lambda s: base64.b64encode(base64.b64decode(s)[:-4]).decode(),  # truncated, valid base64
    lambda s: "",
])
def test_truncated_signature(image: Image, keys: dict[str, SigningKey], mangle: object) -> None:
    key = keys["ecdsa-p384"]
    signed = sign_image(image.store, image.ref, key)
    doc = _manifest(image.store, signed.signature)
    annotations = doc["layers"][0]["annotations"]  # type: ignore[index]
    annotations[c.COSIGN_SIGNATURE_ANNOTATION] = mangle(annotations[c.COSIGN_SIGNATURE_ANNOTATION])  # type: ignore[operator]
    _retag_signature(image, doc)
    with pytest.raises((SignatureMismatch, MalformedSignature)) as info:
        verify_image(image.store, image.ref, [public_key_of(key)])
    assert "signature" in str(info.value)


def test_missing_signature_annotation(image: Image, keys: dict[str, SigningKey]) -> None:
    signed = sign_image(image.store, image.ref, keys["ed25519"])
    doc = _manifest(image.store, signed.signature)
    del doc["layers"][0]["annotations"]  # type: ignore[index]
    _retag_signature(image, doc)
    with pytest.raises(MalformedSignature, match=r"has no dev\.cosignproject\.cosign/signature annotation"):
        verify_image(image.store, image.ref, [public_key_of(keys["ed25519"])])


@pytest.mark.parametrize("fmt", ["legacy", "oci11", "bundle"])
@pytest.mark.leaves_damaged_store
def test_signature_blob_missing(image: Image, keys: dict[str, SigningKey], fmt: str) -> None:
    signed = sign_image(image.store, image.ref, keys["ecdsa-p256"], fmt)
    layer = Descriptor.from_json(_manifest(image.store, signed.signature)["layers"][0])  # type: ignore[index]
    os.unlink(image.store.blobs.path(layer.digest))
    with pytest.raises(SignatureBlobMissing, match=f"blob {layer.digest} is missing from the store"):
        verify_image(image.store, image.ref, [public_key_of(keys["ecdsa-p256"])])


@pytest.mark.leaves_damaged_store
def test_signature_manifest_missing(image: Image, keys: dict[str, SigningKey]) -> None:
    signed = sign_image(image.store, image.ref, keys["ecdsa-p256"])
    os.unlink(image.store.blobs.path(signed.signature.digest))
    with pytest.raises(SignatureBlobMissing, match="is missing from the store"):
        verify_image(image.store, image.ref, [public_key_of(keys["ecdsa-p256"])])


@pytest.mark.leaves_damaged_store
def test_damaged_payload_blob(image: Image, keys: dict[str, SigningKey]) -> None:
    signed = sign_image(image.store, image.ref, keys["ecdsa-p256"])
    layer = Descriptor.from_json(_manifest(image.store, signed.signature)["layers"][0])  # type: ignore[index]
    path = image.store.blobs.path(layer.digest)
    os.chmod(path, 0o644)
    data = path.read_bytes()
    assert image.repository.encode() in data
    path.write_bytes(data.replace(image.repository.encode(), image.repository.upper().encode()))
    with pytest.raises(MalformedSignature, match="is damaged"):
        verify_image(image.store, image.ref, [public_key_of(keys["ecdsa-p256"])])


def _pin_bundle(image: Image, bundle: bytes) -> None:
    store = image.store
    layer = {"mediaType": c.BUNDLE_V03, "size": len(bundle), "digest": str(store.blobs.put(bundle))}
    store.blobs.put(c.EMPTY_JSON)
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": c.BUNDLE_V03,
           "config": {"mediaType": mt.OCI_EMPTY, "size": 2, "digest": str(c.EMPTY_JSON_DIGEST)},
           "layers": [layer], "subject": image.root.bare().to_json()}
    with store.transaction() as txn:
        txn.pin(_put(store, doc))


def _hostile_bundle(key: SigningKey, digest: Digest, *, payload_type: str = c.IN_TOTO_PAYLOAD_TYPE,
                    signatures: int = 1, raw_sig: str | None = None) -> bytes:
    statement = build_statement(digest)
    signature = sign_bytes(key, pae(payload_type, statement))
    doc = json.loads(build_bundle(statement, signature, public_key_of(key).der))
    doc["dsseEnvelope"]["payloadType"] = payload_type
    doc["dsseEnvelope"]["signatures"] = doc["dsseEnvelope"]["signatures"] * signatures
    if raw_sig is not None:
        doc["dsseEnvelope"]["signatures"][0]["sig"] = raw_sig
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"payload_type": "application/json"}, MalformedSignature, "payloadType is 'application/json'"),
    ({"signatures": 2}, MalformedSignature, "exactly one signature, it holds 2"),
    ({"signatures": 0}, MalformedSignature, "exactly one signature, it holds 0"),
    ({"raw_sig": "@@not-base64@@"}, MalformedSignature, "not valid base64"),
    ({"digest": Digest.of_bytes(b"x")}, PayloadDigestMismatch, "bundle statement names sha256:"),
])
def test_hostile_bundle_in_store(image: Image, keys: dict[str, SigningKey], kwargs: dict[str, object],
                                 error: type[Exception], message: str) -> None:
    key = keys["ecdsa-p256"]
    digest = kwargs.pop("digest", image.root.digest)
    _pin_bundle(image, _hostile_bundle(key, digest, **kwargs))  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        verify_image(image.store, image.ref, [public_key_of(key)])


def test_bundle_that_is_not_json(image: Image, keys: dict[str, SigningKey]) -> None:
    _pin_bundle(image, b"\x00\x01 not json")
    with pytest.raises(MalformedSignature, match="Sigstore bundle is not valid JSON"):
        verify_image(image.store, image.ref, [public_key_of(keys["ecdsa-p256"])])


def test_referrer_of_another_image_is_ignored(image: Image, keys: dict[str, SigningKey]) -> None:
    signed = sign_image(image.store, image.ref, keys["ecdsa-p256"], "oci11")
    doc = _manifest(image.store, signed.signature)
    doc["subject"] = {"mediaType": mt.OCI_INDEX, "size": 1, "digest": str(Digest.of_bytes(b"other"))}
    with image.store.transaction() as txn:
        txn.unpin(signed.signature.digest)
        txn.pin(_put(image.store, doc))
    with pytest.raises(NoSignatureFound):
        verify_image(image.store, image.ref, [public_key_of(keys["ecdsa-p256"])])
