"""Signatures travel with images: sign → push → pull into a fresh store → verify offline (real docker-registry).

distribution 2.8 has no Referrers API (it answers 404), so OCI 1.1 and bundle referrers go through the
``sha256-<hex>`` referrers-tag index there; the Referrers API path is tested against ``gadgetstore serve``
in test_signatures_referrers.py.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine import reference
from gadgetstore.engine.archive import export_images, import_archive
from gadgetstore.engine.descriptor import Descriptor, canonical_json
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_image, pull_images
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.registry.signatures import SignatureRefused, VerifyPolicy
from gadgetstore.engine.signatures import constants as c
from gadgetstore.engine.signatures import verify_image
from gadgetstore.engine.signatures.errors import NoSignatureFound, SignatureMismatch
from gadgetstore.engine.signatures.sign import SIGN_FORMATS, sign_image
from gadgetstore.engine.signatures.signing_keys import KEY_TYPES, SigningKey, generate_private_key, public_key_of
from gadgetstore.engine.store import Store
from tests.support.images import make_gadget_image, verify_store
from tests.support.registry import RegistryServer, unique_repo

METHODS = {"legacy": "cosign legacy", "oci11": "cosign OCI 1.1", "bundle": "cosign bundle"}


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {kind: generate_private_key(kind, rsa_bits=2048) for kind in KEY_TYPES}


def insecure(server: RegistryServer) -> TransferOptions:
    return TransferOptions(insecure_registries=frozenset({server.host}))


def signed_image(tmp_path: Path, server: RegistryServer, key: SigningKey, formats: tuple[str, ...]
                 ) -> tuple[Store, str]:
    src = Store.open(tmp_path / "src")
    image = str(normalize(server.ref(unique_repo("sig"), "v1")))
    make_gadget_image(src, image, archs=("amd64",))
    for fmt in formats:
        sign_image(src, image, key, fmt)
    return src, image


def remote_manifest(server: RegistryServer, image: str, reference: str) -> dict[str, object] | None:
    repo = normalize(image).path
    req = urllib.request.Request(f"{server.url}/v2/{repo}/manifests/{reference}",
                                 headers={"Accept": f"{mt.OCI_INDEX}, {mt.OCI_MANIFEST}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            doc: dict[str, object] = json.loads(resp.read())
            return doc
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


@pytest.mark.parametrize("fmt", SIGN_FORMATS)
async def test_round_trip_each_format(anon_registry: RegistryServer, tmp_path: Path, keys: dict[str, SigningKey],
                                      fmt: str) -> None:
    key = keys["ecdsa-p256"]
    src, image = signed_image(tmp_path, anon_registry, key, (fmt,))
    root = src.resolve(image)
    pushed = await push_image(src, image, insecure(anon_registry))
    assert pushed.signatures == 1
    hexpart = root.digest.hex
    index = remote_manifest(anon_registry, image, f"sha256-{hexpart}")
    if fmt == "legacy":
        assert remote_manifest(anon_registry, image, f"sha256-{hexpart}.sig") is not None
        assert index is None
    else:  # no Referrers API on distribution 2.8: the referrers-tag index lists the signature
        assert index is not None and index["mediaType"] == mt.OCI_INDEX
        entries = index["manifests"]
        assert isinstance(entries, list) and len(entries) == 1
        assert entries[0]["artifactType"] == (c.BUNDLE_V03 if fmt == "bundle" else c.COSIGN_SIG_ARTIFACT)

    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, insecure(anon_registry))
    assert (result.signatures, result.warnings) == (1, [])
    # offline from here on: verify reads only the store
    verified = verify_image(dst, image, [public_key_of(key)])
    assert (verified.method, verified.digest) == (METHODS[fmt], root.digest)
    if fmt == "legacy":
        assert reference.legacy_signature_tag(root.digest) in dst.tags()
    else:
        assert [p.digest for p in dst.pins()] == [verified.signature]
        assert reference.referrers_tag(root.digest) not in dst.tags()  # referrers are pinned, not the index
    verify_store(tmp_path / "dst")
    with pytest.raises(SignatureMismatch):
        verify_image(dst, image, [public_key_of(keys["ed25519"])])


@pytest.mark.parametrize("kind", KEY_TYPES)
async def test_round_trip_all_formats_each_key_type(anon_registry: RegistryServer, tmp_path: Path,
                                                    keys: dict[str, SigningKey], kind: str) -> None:
    """All three formats at once: every one is stored (not just the first found, as ig would)."""
    key = keys[kind]
    src, image = signed_image(tmp_path, anon_registry, key, SIGN_FORMATS)
    root = src.resolve(image)
    assert (await push_image(src, image, insecure(anon_registry))).signatures == 3
    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, insecure(anon_registry), verify=VerifyPolicy((public_key_of(key),)))
    assert result.signatures == 3
    assert verify_image(dst, image, [public_key_of(key)]).method == "cosign legacy"
    with dst.transaction() as txn:
        txn.untag(reference.legacy_signature_tag(root.digest))
    assert verify_image(dst, image, [public_key_of(key)]).method == "cosign OCI 1.1"
    assert len(dst.pins()) == 2


async def test_push_merges_into_an_existing_referrers_index(anon_registry: RegistryServer, tmp_path: Path,
                                                            keys: dict[str, SigningKey]) -> None:
    """A second signer's push adds to the ``sha256-<hex>`` index instead of replacing it."""
    src, image = signed_image(tmp_path, anon_registry, keys["rsa"], ("oci11",))
    await push_image(src, image, insecure(anon_registry))
    root = src.resolve(image)
    other = Store.open(tmp_path / "other")
    await pull_image(other, image, insecure(anon_registry))
    sign_image(other, image, keys["ed25519"], "bundle")
    assert (await push_image(other, image, insecure(anon_registry))).signatures == 2
    index = remote_manifest(anon_registry, image, f"sha256-{root.digest.hex}")
    assert index is not None
    kinds = sorted(e["artifactType"] for e in index["manifests"])  # type: ignore[attr-defined]
    assert kinds == sorted([c.COSIGN_SIG_ARTIFACT, c.BUNDLE_V03])
    dst = Store.open(tmp_path / "dst")
    assert (await pull_image(dst, image, insecure(anon_registry))).signatures == 2
    assert verify_image(dst, image, [public_key_of(keys["rsa"])]).method == "cosign OCI 1.1"
    oci11 = verify_image(dst, image, [public_key_of(keys["rsa"])]).signature
    with dst.transaction() as txn:  # the verifier lets the first format present decide, as ig does
        txn.unpin(oci11)
    assert verify_image(dst, image, [public_key_of(keys["ed25519"])]).method == "cosign bundle"


async def test_unsigned_image_pulls_quietly(anon_registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    image = str(normalize(anon_registry.ref(unique_repo(), "v1")))
    make_gadget_image(src, image)
    assert (await push_image(src, image, insecure(anon_registry))).signatures == 0
    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, insecure(anon_registry))
    assert (result.signatures, result.warnings, dst.tags(), dst.pins()) == (0, [], [image], [])
    with pytest.raises(NoSignatureFound):
        verify_image(dst, image)


async def test_verify_refuses_and_leaves_nothing(anon_registry: RegistryServer, tmp_path: Path,
                                                 keys: dict[str, SigningKey]) -> None:
    src, image = signed_image(tmp_path, anon_registry, keys["ecdsa-p256"], ("legacy", "bundle"))
    await push_image(src, image, insecure(anon_registry))
    unsigned = str(normalize(anon_registry.ref(unique_repo(), "v1")))
    make_gadget_image(src, unsigned, seed="unsigned")
    await push_image(src, unsigned, insecure(anon_registry))

    dst = Store.open(tmp_path / "dst")
    kept = make_gadget_image(dst, "example.com/kept:v1", archs=("amd64",))
    before = set(dst.blobs.iter_digests())
    wrong = VerifyPolicy((public_key_of(keys["ed25519"]),), "test policy")
    results = await pull_images(dst, [image, unsigned], insecure(anon_registry), verify=wrong)
    assert all(isinstance(r.error, SignatureRefused) for r in results)
    assert "does not verify with the trusted key" in str(results[0].error)
    assert "no cosign signature found" in str(results[1].error)
    assert "(test policy)" in str(results[0].error) and "image not tagged" in str(results[0].error)
    dst.refresh()
    assert dst.tags() == ["example.com/kept:v1"] and dst.pins() == []
    assert set(dst.blobs.iter_digests()) == before  # the refused images' blobs are gone, the kept ones stay
    assert dst.lookup("example.com/kept:v1") == kept
    verify_store(tmp_path / "dst")

    with pytest.raises(SignatureRefused):
        await pull_image(dst, image, insecure(anon_registry), verify=VerifyPolicy())  # ig's key did not sign it
    ok = await pull_image(dst, image, insecure(anon_registry),
                          verify=VerifyPolicy((public_key_of(keys["ecdsa-p256"]),)))
    assert ok.signatures == 2 and image in dst.tags()


async def test_refused_repull_keeps_the_existing_image(anon_registry: RegistryServer, tmp_path: Path,
                                                       keys: dict[str, SigningKey]) -> None:
    """An image already in the store stays as it was when a stricter re-pull refuses it."""
    src, image = signed_image(tmp_path, anon_registry, keys["rsa"], ("legacy",))
    await push_image(src, image, insecure(anon_registry))
    dst = Store.open(tmp_path / "dst")
    await pull_image(dst, image, insecure(anon_registry))
    tags, blobs = dst.tags(), set(dst.blobs.iter_digests())
    with pytest.raises(SignatureRefused):
        await pull_image(dst, image, insecure(anon_registry), verify=VerifyPolicy((public_key_of(keys["ed25519"]),)))
    dst.refresh()
    assert (dst.tags(), set(dst.blobs.iter_digests())) == (tags, blobs)
    assert verify_image(dst, image, [public_key_of(keys["rsa"])]).method == "cosign legacy"


async def test_export_import_of_pulled_signatures(anon_registry: RegistryServer, tmp_path: Path,
                                                  keys: dict[str, SigningKey]) -> None:
    key = keys["ecdsa-p384"]
    src, image = signed_image(tmp_path, anon_registry, key, SIGN_FORMATS)
    await push_image(src, image, insecure(anon_registry))
    pulled = Store.open(tmp_path / "pulled")
    await pull_image(pulled, image, insecure(anon_registry))
    archive = tmp_path / "signed.tar"
    export_images(pulled, [image], archive)
    third = Store.open(tmp_path / "third")
    assert import_archive(third, archive) == [image]
    assert verify_image(third, image, [public_key_of(key)]).method == "cosign legacy"
    root = third.resolve(image)
    with third.transaction() as txn:
        txn.untag(reference.legacy_signature_tag(root.digest))
    assert verify_image(third, image, [public_key_of(key)]).method == "cosign OCI 1.1"
    verify_store(tmp_path / "third")


async def test_push_of_a_stored_referrers_tag_index(anon_registry: RegistryServer, tmp_path: Path,
                                                    keys: dict[str, SigningKey]) -> None:
    """A store that keeps an OCI 1.1 signature only through a ``sha256-<hex>`` index (as ig's copy does)."""
    key = keys["ecdsa-p256"]
    src, image = signed_image(tmp_path, anon_registry, key, ("oci11",))
    root = src.resolve(image)
    (pin,) = src.pins()
    index = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [pin.to_json()]})
    with src.transaction() as txn:
        txn.unpin(pin.digest)
        txn.tag(reference.referrers_tag(root.digest), Descriptor(mt.OCI_INDEX, src.blobs.put(index), len(index)))
    assert (await push_image(src, image, insecure(anon_registry))).signatures == 1
    remote = remote_manifest(anon_registry, image, f"sha256-{root.digest.hex}")
    assert remote is not None and [e["digest"] for e in remote["manifests"]] == [str(pin.digest)]  # type: ignore[attr-defined]
    dst = Store.open(tmp_path / "dst")
    assert (await pull_image(dst, image, insecure(anon_registry))).signatures == 1
    assert verify_image(dst, image, [public_key_of(key)]).method == "cosign OCI 1.1"


async def test_batch_of_signed_images_with_verify(anon_registry: RegistryServer, tmp_path: Path,
                                                  keys: dict[str, SigningKey]) -> None:
    """Concurrent pulls record, verify and tag side by side; a warm re-pull changes no signature record."""
    key = keys["ed25519"]
    src = Store.open(tmp_path / "src")
    repo = unique_repo("batch")
    images = [str(normalize(anon_registry.ref(repo, f"v{i}"))) for i in range(6)]
    for i, image in enumerate(images):
        make_gadget_image(src, image, seed=f"b{i}", archs=("amd64",))
        sign_image(src, image, key, SIGN_FORMATS[i % 3])
        await push_image(src, image, insecure(anon_registry))
    dst = Store.open(tmp_path / "dst")
    policy = VerifyPolicy((public_key_of(key),))
    results = await pull_images(dst, images, insecure(anon_registry), verify=policy)
    assert [(r.error, r.signatures) for r in results] == [(None, 1)] * 6
    state = (dst.tags(), dst.pins())
    again = await pull_images(dst, images, insecure(anon_registry), verify=policy)
    assert [(r.error, r.signatures, r.warnings) for r in again] == [(None, 1, [])] * 6
    assert (dst.tags(), dst.pins()) == state
    verify_store(tmp_path / "dst")


@pytest.mark.parametrize("config_variant", [False, True])
async def test_notation_signature_travels(anon_registry: RegistryServer, tmp_path: Path, gadget_tar: Path,
                                          config_variant: bool) -> None:
    """Notation referrers (both shapes notation writes) are pushed and pulled like cosign's."""
    from cryptography.hazmat.primitives import serialization

    from gadgetstore.engine.signatures.notation import NotationOptions, load_certificates
    from tests.engine.signatures.helpers import NOW, Image, attach, make_jws, make_pki, policy, target_of

    src = Store.open(tmp_path / "src")
    (imported,) = import_archive(src, gadget_tar)
    image = str(normalize(anon_registry.ref(unique_repo("notation"), "v1")))
    root = src.resolve(imported)
    with src.transaction() as txn:
        txn.tag(image, root)
    pki = make_pki()
    attach(Image(src, image, root), make_jws(pki.leaf_key, [pki.leaf, pki.ca], target_of(Image(src, image, root))),
           config_variant=config_variant)
    assert (await push_image(src, image, insecure(anon_registry))).signatures == 1
    dst = Store.open(tmp_path / "dst")
    assert (await pull_image(dst, image, insecure(anon_registry))).signatures == 1
    pem = pki.ca.public_bytes(serialization.Encoding.PEM).decode()
    result = verify_image(dst, image, [], NotationOptions(load_certificates([pem]), policy()), NOW)
    assert (result.method, result.digest) == ("notation", root.digest)
