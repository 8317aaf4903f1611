"""One tags/list per repository stands in for a batch's signature-tag lookups (real docker-registry)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry import tagsnapshot
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_images
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.signatures.sign import sign_image
from gadgetstore.engine.signatures.signing_keys import generate_private_key
from gadgetstore.engine.store import Store
from tests.support.fakes import FaultProxy
from tests.support.images import make_gadget_image, verify_store
from tests.support.registry import RegistryServer, unique_repo

SIGNATURE_TAG_RE = re.compile(r"/manifests/sha256-[0-9a-f]{64}(\.sig)?$")
FORMATS = ("legacy", None, "oci11", None)  # how each image of the batch is signed (None: not at all)


@pytest.fixture
def proxy(anon_registry: RegistryServer) -> Iterator[FaultProxy]:
    server = FaultProxy(anon_registry.host)
    yield server
    server.close()


async def publish_batch(server: RegistryServer, tmp_path: Path) -> list[str]:
    """Four images of one repository, two of them signed (cosign legacy tag, OCI 1.1 referrers tag)."""
    src = Store.open(tmp_path / "src")
    key = generate_private_key("ecdsa-p256")
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


async def test_a_batch_lists_the_repository_once_and_asks_only_for_tags_that_exist(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    images = through(proxy, await publish_batch(anon_registry, tmp_path), anon_registry)
    dst = Store.open(tmp_path / "dst")
    results = await pull_images(dst, images, TransferOptions(insecure_registries=frozenset({proxy.host})))
    assert [(r.error, r.signatures) for r in results] == [(None, 1), (None, 0), (None, 1), (None, 0)]
    assert len(tag_listings(proxy)) == 1
    # without the listing: 2 lookups per image (8); with it, only the two signature tags that exist
    assert len(signature_tag_gets(proxy)) == 2
    verify_store(tmp_path / "dst")


@pytest.mark.parametrize("failure", ["status", "paginated", "full page"])
async def test_without_a_whole_listing_every_tag_is_asked_for(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        failure: str) -> None:
    images = through(proxy, await publish_batch(anon_registry, tmp_path), anon_registry)
    if failure == "status":
        proxy.add(r"GET /v2/.*/tags/list", "status", status=403)
    elif failure == "paginated":  # docker-registry 2.8 does not paginate tags; one that does sends a link
        proxy.add(r"GET /v2/.*/tags/list", "add-headers", headers={"Link": '</v2/x/tags/list?last=v1>; rel="next"'})
    else:  # a page as long as asked for may have been cut without a link
        monkeypatch.setattr(tagsnapshot, "PAGE_SIZE", 4)
    dst = Store.open(tmp_path / "dst")
    results = await pull_images(dst, images, TransferOptions(insecure_registries=frozenset({proxy.host})))
    assert [(r.error, r.signatures, r.warnings) for r in results] == [
        (None, 1, []), (None, 0, []), (None, 1, []), (None, 0, [])]
    assert len(tag_listings(proxy)) == 1  # a failed listing is not retried image after image
    assert len(signature_tag_gets(proxy)) == 2 * len(images)


async def test_a_single_image_asks_for_its_tags_without_listing(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    images = through(proxy, await publish_batch(anon_registry, tmp_path), anon_registry)
    dst = Store.open(tmp_path / "dst")
    results = await pull_images(dst, images[:1], TransferOptions(insecure_registries=frozenset({proxy.host})))
    assert [(r.error, r.signatures) for r in results] == [(None, 1)]
    assert tag_listings(proxy) == []
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
