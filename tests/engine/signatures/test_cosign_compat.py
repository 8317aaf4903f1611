"""What ``sign`` writes, decoded field by field against cosign's published formats (not our reader).

References: cosign's signature spec (specs/SIGNATURE_SPEC.md: simple signing payload, the
``dev.cosignproject.cosign/signature`` annotation, ``sha256-<hex>.sig`` tags), its OCI 1.1 mode
(config media type ``application/vnd.dev.cosign.artifact.sig.v1+json`` plus ``subject``), and the
Sigstore bundle v0.3 / DSSE / in-toto specifications.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.signatures.sign import sign_image
from gadgetstore.engine.signatures.signing_keys import SigningKey

from .helpers import Image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _blob(image: Image, digest: str) -> bytes:
    data = image.store.blobs.path(Digest.parse(digest)).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def _check_simple_signing_layer(image: Image, layer: dict[str, object], key: SigningKey) -> None:
    assert list(layer) == ["mediaType", "size", "digest", "annotations"]  # go-containerregistry order
    assert layer["mediaType"] == SIMPLE_SIGNING
    payload = _blob(image, str(layer["digest"]))
    assert layer["size"] == len(payload)
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"' + image.repository.encode() + b'"},'
        b'"image":{"docker-manifest-digest":"' + str(image.root.digest).encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}')
    annotations = layer["annotations"]
    assert isinstance(annotations, dict) and list(annotations) == ["dev.cosignproject.cosign/signature"]
    signature = base64.b64decode(annotations["dev.cosignproject.cosign/signature"], validate=True)
    pub = key.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(signature, payload, ec.ECDSA(hashes.SHA256()))  # ASN.1 DER ECDSA over SHA-256 of the payload
    assert signature[0] == 0x30  # DER SEQUENCE


def _check_config(image: Image, config: dict[str, object], media_type: str, payload_digest: str) -> None:
    assert list(config) == ["mediaType", "size", "digest"]
    assert config["mediaType"] == media_type
    data = _blob(image, str(config["digest"]))
    assert config["size"] == len(data) == 233  # the size cosign's configs have for a sha256 payload
    assert json.loads(data) == {
        "architecture": "", "created": "0001-01-01T00:00:00Z", "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "", "rootfs": {"type": "layers", "diff_ids": [payload_digest]}, "config": {}}


def test_legacy_signature_layout(image: Image, keys: dict[str, SigningKey]) -> None:
    key = keys["ecdsa-p256"]
    signed = sign_image(image.store, image.ref, key)
    tag = "sha256-" + image.root.digest.hex + ".sig"
    assert signed.tag == tag
    assert image.store.lookup(tag) == signed.signature
    raw = _blob(image, str(signed.signature.digest))
    assert b" " not in raw and b"\n" not in raw  # compact, as Go marshals it
    doc = json.loads(raw)
    assert list(doc) == ["schemaVersion", "mediaType", "config", "layers"]
    assert (doc["schemaVersion"], doc["mediaType"]) == (2, OCI_MANIFEST)
    assert signed.signature.media_type == OCI_MANIFEST
    (layer,) = doc["layers"]
    _check_config(image, doc["config"], "application/vnd.oci.image.config.v1+json", layer["digest"])
    _check_simple_signing_layer(image, layer, key)
    index = json.loads((image.store.root / "index.json").read_bytes())
    names = [m.get("annotations", {}).get("org.opencontainers.image.ref.name") for m in index["manifests"]]
    assert tag in names  # stored without repository, as ig does


def test_oci11_signature_layout(image: Image, keys: dict[str, SigningKey]) -> None:
    key = keys["ecdsa-p256"]
    signed = sign_image(image.store, image.ref, key, "oci11")
    assert signed.tag is None
    doc = json.loads(_blob(image, str(signed.signature.digest)))
    assert list(doc) == ["schemaVersion", "mediaType", "artifactType", "config", "layers", "subject"]
    assert doc["artifactType"] == COSIGN_SIG
    (layer,) = doc["layers"]
    _check_config(image, doc["config"], COSIGN_SIG, layer["digest"])
    _check_simple_signing_layer(image, layer, key)
    assert doc["subject"] == {"mediaType": "application/vnd.oci.image.index.v1+json",
                              "size": image.root.size, "digest": str(image.root.digest)}
    index = json.loads((image.store.root / "index.json").read_bytes())
    (entry,) = [m for m in index["manifests"] if m["digest"] == str(signed.signature.digest)]
    assert entry["artifactType"] == COSIGN_SIG and "annotations" not in entry  # untagged referrer


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519"])
def test_bundle_signature_layout(image: Image, keys: dict[str, SigningKey], kind: str) -> None:
    key = keys[kind]
    signed = sign_image(image.store, image.ref, key, "bundle")
    doc = json.loads(_blob(image, str(signed.signature.digest)))
    assert doc["artifactType"] == BUNDLE and doc["mediaType"] == OCI_MANIFEST
    assert doc["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                             "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
    assert _blob(image, doc["config"]["digest"]) == b"{}"
    assert doc["annotations"]["dev.sigstore.bundle.content"] == "dsse-envelope"
    assert doc["annotations"]["dev.sigstore.bundle.predicateType"] == "https://sigstore.dev/cosign/sign/v1"
    assert doc["subject"]["digest"] == str(image.root.digest)
    (layer,) = doc["layers"]
    assert layer["mediaType"] == BUNDLE
    bundle = json.loads(_blob(image, layer["digest"]))
    assert bundle["mediaType"] == BUNDLE
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement_bytes = base64.b64decode(envelope["payload"], validate=True)
    statement = json.loads(statement_bytes)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"digest": {"sha256": image.root.digest.hex}}]
    (sig,) = envelope["signatures"]
    signature = base64.b64decode(sig["sig"], validate=True)
    # PAE written out by hand from the DSSE v1 protocol text.
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d " % len(statement_bytes) + statement_bytes
    pub = key.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(signature, pae, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(pub, ed25519.Ed25519PublicKey)
        pub.verify(signature, pae)
