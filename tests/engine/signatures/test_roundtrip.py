"""sign → export → import into a fresh store → verify, for every key type and format."""

from __future__ import annotations

from pathlib import Path

import pytest

from gadgetstore.engine import reference
from gadgetstore.engine.archive import export_images, import_archive
from gadgetstore.engine.signatures.errors import NoSignatureFound, SignatureMismatch
from gadgetstore.engine.signatures.sign import SIGN_FORMATS, sign_image
from gadgetstore.engine.signatures.signing_keys import KEY_TYPES, SigningKey, public_key_of
from gadgetstore.engine.signatures.verify import verify_image
from gadgetstore.engine.store import Store

from .helpers import Image

METHODS = {"legacy": "cosign legacy", "oci11": "cosign OCI 1.1", "bundle": "cosign bundle"}


@pytest.mark.parametrize("fmt", SIGN_FORMATS)
@pytest.mark.parametrize("kind", KEY_TYPES)
def test_sign_export_import_verify(image: Image, keys: dict[str, SigningKey], other_key: SigningKey,
                                   tmp_path: Path, kind: str, fmt: str) -> None:
    key = keys[kind]
    signed = sign_image(image.store, image.ref, key, fmt)
    assert signed.digest == image.root.digest
    archive = tmp_path / "signed.tar"
    export_images(image.store, [image.ref], archive)

    fresh = Store.open(tmp_path / "fresh")
    assert import_archive(fresh, archive) == [image.ref]
    result = verify_image(fresh, image.ref, [public_key_of(other_key), public_key_of(key)])
    assert result.method == METHODS[fmt]
    assert result.digest == image.root.digest
    assert result.signature == signed.signature.digest
    assert result.signer == str(public_key_of(key))
    if fmt == "legacy":
        assert fresh.lookup(reference.legacy_signature_tag(image.root.digest)) == signed.signature
    else:
        assert signed.signature.digest in {p.digest for p in fresh.pins()}
    with pytest.raises(SignatureMismatch):
        verify_image(fresh, image.ref, [public_key_of(other_key)])


def test_removing_the_image_drops_its_signatures(image: Image, keys: dict[str, SigningKey]) -> None:
    for fmt in SIGN_FORMATS:
        sign_image(image.store, image.ref, keys["ed25519"], fmt)
    assert len(image.store.pins()) == 2
    image.store.remove_image(image.ref)
    assert image.store.tags() == [] and image.store.pins() == []
    assert list(image.store.blobs.iter_digests()) == []


def test_signing_again_replaces_the_previous_signature(image: Image, keys: dict[str, SigningKey]) -> None:
    for fmt in ("oci11", "bundle"):
        first = sign_image(image.store, image.ref, keys["ecdsa-p256"], fmt)
        second = sign_image(image.store, image.ref, keys["ecdsa-p384"], fmt)
        pinned = {p.digest for p in image.store.pins()}
        assert second.signature.digest in pinned and first.signature.digest not in pinned
    sign_image(image.store, image.ref, keys["rsa"], "legacy")
    result = verify_image(image.store, image.ref, [public_key_of(keys["rsa"])])
    assert result.method == "cosign legacy"


def test_formats_are_tried_in_ig_order(image: Image, keys: dict[str, SigningKey]) -> None:
    """The first format present decides, as in ig: a legacy tag hides an OCI 1.1 signature."""
    sign_image(image.store, image.ref, keys["ed25519"], "bundle")
    assert verify_image(image.store, image.ref, [public_key_of(keys["ed25519"])]).method == "cosign bundle"
    sign_image(image.store, image.ref, keys["rsa"], "oci11")
    assert verify_image(image.store, image.ref, [public_key_of(keys["rsa"])]).method == "cosign OCI 1.1"
    sign_image(image.store, image.ref, keys["ecdsa-p256"], "legacy")
    assert verify_image(image.store, image.ref, [public_key_of(keys["ecdsa-p256"])]).method == "cosign legacy"
    with pytest.raises(SignatureMismatch):
        verify_image(image.store, image.ref, [public_key_of(keys["rsa"])])


def test_unsigned_image_and_default_key(image: Image, keys: dict[str, SigningKey]) -> None:
    with pytest.raises(NoSignatureFound, match=f"no cosign signature found for {image.root.digest}"):
        verify_image(image.store, image.ref)
    sign_image(image.store, image.ref, keys["ecdsa-p256"])
    with pytest.raises(SignatureMismatch, match="ECDSA P-256 key"):
        verify_image(image.store, image.ref)  # Inspektor Gadget's key did not sign it
