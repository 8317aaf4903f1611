"""One tags/list per repository stands in for a batch's signature-tag lookups, and a re-pull of an
unchanged image asks for nothing but its tag (real docker-registry behind a recording proxy)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry import tagsnapshot
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_images
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.registry.signatures import SignatureRefused, VerifyPolicy
from gadgetstore.engine.signatures.sign import sign_image
from gadgetstore.engine.signatures.signing_keys import SigningKey, generate_private_key, public_key_of
from gadgetstore.engine.store import Store
from tests.support.fakes import FaultProxy
from tests.support.images import make_gadget_image, verify_store
from tests.support.registry import RegistryServer, unique_repo

SIGNATURE_TAG_RE = re.compile(r"/manifests/sha256-[0-9a-f]{64}(\.sig)?$")
FORMATS = ("legacy", None, "oci11", None)  # how each image of the batch is signed (None: not at all)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_private_key("ecdsa-p256")


async def publish_batch(server: RegistryServer, tmp_path: Path, key: SigningKey | None = None) -> list[str]:
    """Four images of one repository, two of them signed (cosign legacy tag, OCI 1.1 referrers tag)."""
    src = Store.open(tmp_path / "src")
    key = key or generate_private_key("ecdsa-p256")
    repo = unique_repo("snap")
    images = [str(normalize(server.ref(repo, f"v{i}"))) for i in range(len(FORMATS))]
    for i, (image, fmt) in enumerate(zip(images, FORMATS, strict=True)):
        make_gadget_image(src, image, seed=f"snap{i}", archs=("amd64",))
        if fmt is not None:
            sign_image(src, image, key, fmt)
        await push_image(src, image, TransferOptions(insecure_registries=frozenset({server.host})))
    return images


def through(proxy: FaultProxy, images: list[str], server: RegistryServer) -> list[str]:
    return [image.replace(server.host, proxy.host, 1) for image in images]


def signature_tag_gets(proxy: FaultProxy) -> list[str]:
    return [path for method, path, _ in proxy.requests if method == "GET" and SIGNATURE_TAG_RE.search(path)]


def tag_listings(proxy: FaultProxy) -> list[str]:
    return [path for _, path, _ in proxy.requests if "/tags/list" in path]


def referrers_probes(proxy: FaultProxy) -> list[str]:
    return [path for _, path, _ in proxy.requests if "/referrers/" in path]


async def test_a_batch_lists_the_repository_once_and_asks_only_for_tags_that_exist(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    images = through(proxy, await publish_batch(anon_registry, tmp_path), anon_registry)
    dst = Store.open(tmp_path / "dst")
    results = await pull_images(dst, images, TransferOptions(insecure_registries=frozenset({proxy.host})))
    assert [(r.error, r.signatures) for r in results] == [(None, 1), (None, 0), (None, 1), (None, 0)]
    assert len(tag_listings(proxy)) == 1
    # without the listing: 2 lookups per image (8); with it, only the two signature tags that exist
    assert len(signature_tag_gets(proxy)) == 2
    assert len(referrers_probes(proxy)) == 1  # the registry's lack of the API was found out once, not per image
    verify_store(tmp_path / "dst")


@pytest.mark.parametrize("failure", ["status", "next page elsewhere", "full page"])
async def test_without_a_whole_listing_every_tag_is_asked_for(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        failure: str) -> None:
    images = through(proxy, await publish_batch(anon_registry, tmp_path), anon_registry)
    if failure == "status":
        proxy.add(r"GET /v2/.*/tags/list", "status", status=403)
    elif failure == "next page elsewhere":  # a page is never fetched from another origin
        proxy.add(r"GET /v2/.*/tags/list", "add-headers",
                  headers={"Link": '<http://127.0.0.1:1/v2/x/tags/list?last=v1>; rel="next"'})
    else:  # a page as long as asked for may have been cut without a link
        monkeypatch.setattr(tagsnapshot, "PAGE_SIZE", 4)
    dst = Store.open(tmp_path / "dst")
    results = await pull_images(dst, images, TransferOptions(insecure_registries=frozenset({proxy.host})))
    assert [(r.error, r.signatures, r.warnings) for r in results] == [
        (None, 1, []), (None, 0, []), (None, 1, []), (None, 0, [])]
    assert len(tag_listings(proxy)) == 1  # a failed listing is not retried image after image
    assert len(signature_tag_gets(proxy)) == 2 * len(images)


async def test_a_paged_listing_is_followed(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    images = through(proxy, await publish_batch(anon_registry, tmp_path), anon_registry)
    repo = normalize(images[0]).path
    proxy.add(r"GET /v2/.*/tags/list", "add-headers",  # docker-registry 2.8 sends one page; say there is a second
              headers={"Link": f'</v2/{repo}/tags/list?n=1000&last=v1>; rel="next"'})
    dst = Store.open(tmp_path / "dst")
    results = await pull_images(dst, images, TransferOptions(insecure_registries=frozenset({proxy.host})))
    assert [(r.error, r.signatures) for r in results] == [(None, 1), (None, 0), (None, 1), (None, 0)]
    assert len(tag_listings(proxy)) == 2
    assert len(signature_tag_gets(proxy)) == 2  # only the tags the pages named


async def test_a_single_image_lists_its_repository_instead_of_two_lookups(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    images = through(proxy, await publish_batch(anon_registry, tmp_path), anon_registry)
    dst = Store.open(tmp_path / "dst")
    results = await pull_images(dst, images[1:2], TransferOptions(insecure_registries=frozenset({proxy.host})))
    assert [(r.error, r.signatures) for r in results] == [(None, 0)]
    assert len(tag_listings(proxy)) == 1
    assert signature_tag_gets(proxy) == []  # unsigned: the listing answered both lookups


async def test_a_listing_longer_than_the_lookups_it_saves_is_given_up(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    """One image saves two lookups: a listing that needs more pages than that is dropped."""
    images = through(proxy, await publish_batch(anon_registry, tmp_path), anon_registry)
    repo = normalize(images[0]).path
    proxy.add(r"GET /v2/.*/tags/list", "add-headers", times=10,
              headers={"Link": f'</v2/{repo}/tags/list?n=1000&last=v1>; rel="next"'})
    dst = Store.open(tmp_path / "dst")
    results = await pull_images(dst, images[:1], TransferOptions(insecure_registries=frozenset({proxy.host})))
    assert [(r.error, r.signatures) for r in results] == [(None, 1)]
    assert len(tag_listings(proxy)) == tagsnapshot.LOOKUPS_PER_IMAGE
    assert len(signature_tag_gets(proxy)) == 2


async def test_a_stale_listing_is_taken_again(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A long batch does not trust one listing for ever: past its age the repository is listed again."""
    monkeypatch.setattr(tagsnapshot, "SNAPSHOT_TTL", 0.0)
    images = through(proxy, await publish_batch(anon_registry, tmp_path), anon_registry)
    dst = Store.open(tmp_path / "dst")
    options = TransferOptions(insecure_registries=frozenset({proxy.host}), max_concurrent_images=1)
    results = await pull_images(dst, images, options)
    assert [r.signatures for r in results] == [1, 0, 1, 0]
    assert len(tag_listings(proxy)) >= len(images)  # one per image at least (its two lookups may race)


def journal_size(store: Path) -> int:
    return (store / "index.journal").stat().st_size


async def test_an_unchanged_repull_asks_only_for_the_tags(anon_registry: RegistryServer, proxy: FaultProxy,
                                                          tmp_path: Path, key: SigningKey) -> None:
    images = through(proxy, await publish_batch(anon_registry, tmp_path, key), anon_registry)
    options = TransferOptions(insecure_registries=frozenset({proxy.host}))
    dst = Store.open(tmp_path / "dst")
    await pull_images(dst, images, options)
    tags, journal = dst.tags(), journal_size(tmp_path / "dst")
    proxy.requests.clear()
    results = await pull_images(dst, images, options)
    assert [r.error for r in results] == [None] * len(images)
    asked = sorted((method, path.rsplit("/", 1)[-1]) for method, path, _ in proxy.requests)
    assert asked == [("GET", f"v{i}") for i in range(len(images))]  # one manifest by tag per image, nothing else
    dst.refresh()
    assert dst.tags() == tags and journal_size(tmp_path / "dst") == journal  # nothing appended either

    proxy.requests.clear()  # with a verify policy the stored signatures decide: no lookup for the signed ones
    policy = VerifyPolicy((public_key_of(key),))
    signed = [images[0], images[2]]
    assert [r.error for r in await pull_images(dst, signed, options, verify=policy)] == [None, None]
    assert len(proxy.requests) == len(signed)


async def test_a_repull_whose_stored_signatures_do_not_verify_looks_again(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, key: SigningKey) -> None:
    images = through(proxy, await publish_batch(anon_registry, tmp_path, key), anon_registry)
    options = TransferOptions(insecure_registries=frozenset({proxy.host}))
    dst = Store.open(tmp_path / "dst")
    await pull_images(dst, images[1:2], options)  # unsigned
    proxy.requests.clear()
    (result,) = await pull_images(dst, images[1:2], options, verify=VerifyPolicy((public_key_of(key),)))
    assert isinstance(result.error, SignatureRefused)
    assert tag_listings(proxy) or signature_tag_gets(proxy)  # looked up again before refusing
    dst.refresh()
    assert dst.lookup(str(normalize(images[1]))) is not None  # the image it had stays


async def test_a_changed_tag_looks_its_signatures_up(anon_registry: RegistryServer, proxy: FaultProxy,
                                                     tmp_path: Path, key: SigningKey) -> None:
    images = through(proxy, await publish_batch(anon_registry, tmp_path, key), anon_registry)
    options = TransferOptions(insecure_registries=frozenset({proxy.host}))
    dst = Store.open(tmp_path / "dst")
    await pull_images(dst, images[:2], options)
    stale = dst.resolve(str(normalize(images[0])))
    with dst.transaction() as txn:  # the store holds another digest under the tag
        txn.tag(str(normalize(images[0])), dst.resolve(str(normalize(images[1]))))
    proxy.requests.clear()
    (result,) = await pull_images(dst, images[:1], options)
    assert (result.error, result.signatures, result.descriptor) == (None, 1, stale)
    assert len(signature_tag_gets(proxy)) == 1
