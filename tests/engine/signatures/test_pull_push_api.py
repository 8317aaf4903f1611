"""The functions the registry code calls: which tags to fetch, what to push, how to keep a pulled one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine import reference
from gadgetstore.engine.descriptor import Descriptor, canonical_json
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.signatures import (
    SIGNATURE_ARTIFACT_TYPES,
    record_pulled_signature,
    signature_artifacts,
    signature_refs,
    verify_image,
)
from gadgetstore.engine.signatures import constants as c
from gadgetstore.engine.signatures.errors import MalformedSignature
from gadgetstore.engine.signatures.sign import sign_image
from gadgetstore.engine.signatures.signing_keys import SigningKey, public_key_of
from gadgetstore.engine.store import Store

from .helpers import Image


def test_signature_refs_names_cosign_and_referrers_tags() -> None:
    digest = Digest.of_bytes(b"an image index")
    assert signature_refs(digest) == [f"sha256-{digest.hex}.sig", f"sha256-{digest.hex}"]
    assert SIGNATURE_ARTIFACT_TYPES == (
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.cncf.notary.signature",
    )


def test_signature_artifacts_lists_what_to_push(image: Image, keys: dict[str, SigningKey]) -> None:
    assert signature_artifacts(image.store, image.root.digest) == []
    legacy = sign_image(image.store, image.ref, keys["ed25519"], "legacy")
    oci11 = sign_image(image.store, image.ref, keys["ed25519"], "oci11")
    bundle = sign_image(image.store, image.ref, keys["ed25519"], "bundle")
    found = signature_artifacts(image.store, image.root.digest)
    assert (found[0].tag, found[0].desc.digest) == (legacy.tag, legacy.signature.digest)
    referrers = {(a.desc.digest, a.artifact_type) for a in found if a.tag is None}
    assert referrers == {(oci11.signature.digest, c.COSIGN_SIG_ARTIFACT), (bundle.signature.digest, c.BUNDLE_V03)}


def _copy_graph(src: Store, dst: Store, desc: Descriptor) -> None:
    for digest in src.walk([desc]):
        dst.blobs.put(src.blobs.read(digest))


def test_record_pulled_signatures_then_verify(image: Image, keys: dict[str, SigningKey], tmp_path: Path) -> None:
    """Simulates a pull: copy blobs over, then keep each signature alive by tag or pin."""
    key = keys["ecdsa-p384"]
    sign_image(image.store, image.ref, key, "legacy")
    sign_image(image.store, image.ref, key, "bundle")
    puller = Store.open(tmp_path / "pulled")
    _copy_graph(image.store, puller, image.root)
    with puller.transaction() as txn:
        txn.tag(image.ref, image.root)
    with puller.lease():
        for artifact in signature_artifacts(image.store, image.root.digest):
            _copy_graph(image.store, puller, artifact.desc)
            record_pulled_signature(puller, artifact.desc, artifact.tag)
    assert verify_image(puller, image.ref, [public_key_of(key)]).method == "cosign legacy"
    with puller.transaction() as txn:
        txn.untag(reference.legacy_signature_tag(image.root.digest))
    assert verify_image(puller, image.ref, [public_key_of(key)]).method == "cosign bundle"


def test_record_pulled_signature_refuses_non_signatures(image: Image) -> None:
    data = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "layers": []})
    desc = Descriptor(mt.OCI_MANIFEST, image.store.blobs.put(data), len(data))
    with pytest.raises(MalformedSignature, match="not a signature tag"):
        record_pulled_signature(image.store, desc, "latest")
    with pytest.raises(MalformedSignature, match="has no subject"):
        record_pulled_signature(image.store, desc, None)
    assert json.loads(image.store.blobs.read(desc.digest)) == {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                                                               "layers": []}


def test_referrers_tag_index_fallback(image: Image, keys: dict[str, SigningKey]) -> None:
    """A ``sha256-<hex>`` index (registries without the Referrers API) leads to the OCI 1.1 signature."""
    key = keys["rsa"]
    signed = sign_image(image.store, image.ref, key, "oci11")
    index = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [signed.signature.to_json()]})
    index_desc = Descriptor(mt.OCI_INDEX, image.store.blobs.put(index), len(index))
    with image.store.transaction() as txn:
        txn.unpin(signed.signature.digest)
        txn.tag(reference.referrers_tag(image.root.digest), index_desc)
    result = verify_image(image.store, image.ref, [public_key_of(key)])
    assert (result.method, result.signature) == ("cosign OCI 1.1", signed.signature.digest)
