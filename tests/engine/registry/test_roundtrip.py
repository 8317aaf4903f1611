"""Push → pull round trips against a real docker-registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gadgetstore.engine.fsck import fsck
from gadgetstore.engine.indexjson import JournalMirror
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_image, pull_images
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.images import graph_digests, make_gadget_image, verify_store
from tests.support.registry import RegistryServer, unique_repo


def insecure(server: RegistryServer, **kw: object) -> TransferOptions:
    return TransferOptions(insecure_registries=frozenset({server.host}), **kw)


async def test_push_then_pull_gives_same_digests(anon_registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    image = anon_registry.ref(unique_repo(), "v1")
    root = make_gadget_image(src, image)
    pushed = await push_image(src, image, insecure(anon_registry))
    assert pushed.descriptor.digest == root.digest
    assert pushed.blobs_uploaded == 3

    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, insecure(anon_registry))
    assert result.descriptor is not None and result.descriptor.digest == root.digest
    assert result.reference == str(normalize(image))
    assert graph_digests(dst, image) == graph_digests(src, image)
    assert verify_store(tmp_path / "dst") == 6

    again = await pull_image(dst, image, insecure(anon_registry))
    assert again.blobs_fetched == 1  # only the root index, by tag; every other blob came from the store


async def test_many_images_share_blobs(anon_registry: RegistryServer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    src = Store.open(tmp_path / "src")
    repo = unique_repo()
    shared = b"shared-layer" * 1000
    images = [anon_registry.ref(repo, f"v{i}") for i in range(4)]
    for i, image in enumerate(images):
        make_gadget_image(src, image, seed=f"s{i}", shared_layer=shared)
        await push_image(src, image, insecure(anon_registry))
    dst = Store.open(tmp_path / "dst")
    index_writes: list[int] = []
    real_write = JournalMirror.write
    monkeypatch.setattr(JournalMirror, "write", lambda self: (index_writes.append(1), real_write(self)))
    results = await pull_images(dst, images, insecure(anon_registry))
    assert [r.error for r in results] == [None] * 4
    assert sorted(dst.tags()) == sorted(str(normalize(i)) for i in images)
    assert len(index_writes) == 1  # one index.json for the whole pull, not one per tag commit
    index = json.loads((tmp_path / "dst" / "index.json").read_bytes())
    assert sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]) == sorted(
        str(normalize(i)) for i in images)
    assert not fsck(Store.open(tmp_path / "dst", readonly=True)).problems
    verify_store(tmp_path / "dst")


async def test_large_blob_ranged_and_chunked_upload(anon_registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    image = anon_registry.ref(unique_repo(), "big")
    root = make_gadget_image(src, image, layer_size=3_000_000, archs=("amd64",))
    opts = insecure(anon_registry, range_threshold=1_000_000, chunk_size=700_000, upload_chunk_size=1_000_000)
    await push_image(src, image, opts)
    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, opts)
    assert result.descriptor is not None and result.descriptor.digest == root.digest
    assert graph_digests(dst, image) == graph_digests(src, image)
    verify_store(tmp_path / "dst")


async def test_cross_repo_mount(anon_registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    first = anon_registry.ref(unique_repo(), "v1")
    root = make_gadget_image(src, first)
    await push_image(src, first, insecure(anon_registry))
    second = anon_registry.ref(unique_repo(), "v1")
    with src.transaction() as txn:
        txn.tag(str(normalize(second)), root)
    pushed = await push_image(src, second, insecure(anon_registry))
    assert (pushed.blobs_mounted, pushed.blobs_uploaded, pushed.blobs_skipped) == (3, 0, 0)
    again = await push_image(src, second, insecure(anon_registry))
    assert (again.blobs_mounted, again.blobs_uploaded, again.blobs_skipped) == (0, 0, 3)
    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, second, insecure(anon_registry))
    assert result.descriptor is not None and result.descriptor.digest == root.digest
    verify_store(tmp_path / "dst")


async def test_push_of_missing_image_is_clear(anon_registry: RegistryServer, tmp_path: Path) -> None:
    import pytest

    from gadgetstore.engine.errors import ImageNotFound

    with pytest.raises(ImageNotFound, match="not found in the store"):
        await push_image(Store.open(tmp_path / "s"), anon_registry.ref("no/such"), insecure(anon_registry))


async def test_pull_keeps_the_whole_graph_of_every_arch(anon_registry: RegistryServer, tmp_path: Path) -> None:
    """Like ig (oras.Copy), a pull stores every architecture, so export and fsck see a complete image."""
    src = Store.open(tmp_path / "src")
    image = anon_registry.ref(unique_repo(), "v1")
    make_gadget_image(src, image)
    await push_image(src, image, insecure(anon_registry))
    dst = Store.open(tmp_path / "dst")
    await pull_image(dst, image, insecure(anon_registry))
    assert graph_digests(dst, image) == graph_digests(src, image)
    assert fsck(dst).clean


async def test_same_manifest_for_both_arches(anon_registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    image = anon_registry.ref(unique_repo(), "v1")
    root = make_gadget_image(src, image, shared_layer=b"wasm-only gadget")  # identical per-arch manifests
    assert len({m["digest"] for m in src.read_document(root)["manifests"]}) == 1
    await push_image(src, image, insecure(anon_registry))
    dst = Store.open(tmp_path / "dst")
    await pull_image(dst, image, insecure(anon_registry))
    assert graph_digests(dst, image) == graph_digests(src, image)


async def test_ranged_pulls_share_a_tiny_pool_without_deadlock(anon_registry: RegistryServer, tmp_path: Path) -> None:
    import trio

    src = Store.open(tmp_path / "src")
    repo = unique_repo()
    images = [anon_registry.ref(repo, f"v{i}") for i in range(4)]
    for i, image in enumerate(images):
        make_gadget_image(src, image, layer_size=1_200_000, seed=f"big{i}")
        await push_image(src, image, insecure(anon_registry))
    opts = insecure(anon_registry, max_connections_per_origin=2, chunk_parallelism=4, range_threshold=1_000_000,
                    chunk_size=200_000)
    dst = Store.open(tmp_path / "dst")
    with trio.fail_after(60):
        results = await pull_images(dst, images, opts)
    assert [r.error for r in results] == [None] * 4
    verify_store(tmp_path / "dst")


async def test_byte_progress_adds_up_to_what_was_fetched(anon_registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    images = [anon_registry.ref(unique_repo(), "v1") for _ in range(2)]
    for image in images:
        make_gadget_image(src, image)
        await push_image(src, image, TransferOptions(insecure_registries=frozenset({anon_registry.host})))
    seen: list[int] = []
    results = await pull_images(Store.open(tmp_path / "dst"), images,
                                TransferOptions(insecure_registries=frozenset({anon_registry.host})),
                                on_bytes=seen.append)
    assert all(r.error is None for r in results)
    assert len(seen) > 2 and sum(seen) == sum(r.bytes_fetched for r in results) > 0


async def test_a_failing_progress_callback_raises_its_own_error(tmp_path: Path) -> None:
    """pull_images' tasks fail like plain exceptions (tasks.task_group), not wrapped in a group."""
    def on_start(image: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")  # a progress display writing to a closed pipe

    with pytest.raises(BrokenPipeError):
        await pull_images(Store.open(tmp_path / "dst"), ["127.0.0.1:9/demo:v1"],
                          TransferOptions(insecure_registries=frozenset({"127.0.0.1:9"})), on_start=on_start)
