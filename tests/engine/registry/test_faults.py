"""A misbehaving network between us and the registry: every case ends verified or with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gadgetstore.engine.errors import GadgetStoreError, IntegrityError
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.errors import RegistryUnavailable
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.fakes import FaultProxy
from tests.support.images import graph_digests, make_gadget_image, verify_store
from tests.support.registry import RegistryServer, push_gadget_image, unique_repo

BIG = 2_500_000


def options(*hosts: str, **kw: object) -> TransferOptions:
    base: dict[str, object] = {"insecure_registries": frozenset(hosts), "backoff_base": 0.01, "backoff_max": 0.05,
                               "read_timeout": 2.0, "range_threshold": 1_000_000, "chunk_size": 600_000}
    base.update(kw)
    return TransferOptions(**base)


async def _published(anon_registry: RegistryServer, tmp_path: Path, layer_size: int = 300_000) -> tuple[str, Store]:
    src = Store.open(tmp_path / "src")
    repo = await push_gadget_image(anon_registry, src, "faults", options(anon_registry.host), layer_size=layer_size)
    return repo, src


def _check(tmp_path: Path, src: Store, src_image: str, dst_image: str) -> None:
    dst = Store.open(tmp_path / "dst")
    assert {d for d in graph_digests(dst, dst_image)} == graph_digests(src, src_image)
    verify_store(tmp_path / "dst")


@pytest.mark.parametrize(
    ("kind", "kw", "layer_size"),
    [
        ("truncate", {"at": 1000}, 300_000),
        ("corrupt", {"at": 5}, 300_000),
        ("drop", {}, 300_000),
        ("status", {"status": 503}, 300_000),
        ("status", {"status": 429, "headers": {"Retry-After": "0"}}, 300_000),
        ("delay", {"seconds": 3.0}, 300_000),  # longer than the read timeout: retried
        ("truncate", {"at": 70_000}, BIG),
        ("corrupt", {"at": 100}, BIG),
        ("ignore-range", {"times": 100}, BIG),
    ],
)
async def test_blob_faults_heal(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, kind: str,
                                kw: dict[str, object], layer_size: int) -> None:
    repo, src = await _published(anon_registry, tmp_path, layer_size)
    proxy.add(r"GET /v2/.*/blobs/", kind, **kw)
    dst = Store.open(tmp_path / "dst")
    image = f"{proxy.host}/{repo}:v1"
    await pull_image(dst, image, options(proxy.host))
    assert proxy.faults[0].hits >= 1
    _check(tmp_path, src, anon_registry.ref(repo, "v1"), image)


async def test_manifest_faults_heal(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    repo, src = await _published(anon_registry, tmp_path)
    proxy.add(r"GET /v2/.*/manifests/", "status", status=502, times=2)
    proxy.add(r"GET /v2/.*/manifests/sha256", "drop")
    image = f"{proxy.host}/{repo}:v1"
    await pull_image(Store.open(tmp_path / "dst"), image, options(proxy.host))
    _check(tmp_path, src, anon_registry.ref(repo, "v1"), image)


async def test_persistent_corruption_is_a_clear_error(anon_registry: RegistryServer, proxy: FaultProxy,
                                                      tmp_path: Path) -> None:
    repo, _ = await _published(anon_registry, tmp_path)
    proxy.add(r"GET /v2/.*/blobs/", "corrupt", at=10, times=1000)
    dst = Store.open(tmp_path / "dst")
    with pytest.raises(IntegrityError, match="digest"):
        await pull_image(dst, f"{proxy.host}/{repo}:v1", options(proxy.host, retries=2))
    assert dst.tags() == []
    verify_store(tmp_path / "dst")


async def test_corrupt_manifest_is_refused(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    repo, _ = await _published(anon_registry, tmp_path)
    proxy.add(r"GET /v2/.*/manifests/sha256", "corrupt", at=3, times=1000)
    dst = Store.open(tmp_path / "dst")
    with pytest.raises(GadgetStoreError, match="digest"):
        await pull_image(dst, f"{proxy.host}/{repo}:v1", options(proxy.host, retries=1))
    assert dst.tags() == []
    verify_store(tmp_path / "dst")


async def test_server_errors_give_up_with_message(anon_registry: RegistryServer, proxy: FaultProxy,
                                                  tmp_path: Path) -> None:
    repo, _ = await _published(anon_registry, tmp_path)
    proxy.add(r"GET /v2/.*/blobs/", "status", status=500, times=1000)
    dst = Store.open(tmp_path / "dst")
    with pytest.raises(RegistryUnavailable, match=r"registry error 500 .*gave up after 2 retries"):
        await pull_image(dst, f"{proxy.host}/{repo}:v1", options(proxy.host, retries=2))
    assert dst.tags() == []
    verify_store(tmp_path / "dst")


async def _push_through(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path,
                        **kw: object) -> tuple[str, Store]:
    """A gadget image with a layer uploaded in 100 kB PATCH chunks, pushed through the proxy."""
    src = Store.open(tmp_path / "src")
    repo = unique_repo("faults")
    make_gadget_image(src, f"{proxy.host}/{repo}:v1", layer_size=300_000)
    await push_image(src, f"{proxy.host}/{repo}:v1", options(proxy.host, upload_chunk_size=100_000, **kw))
    return repo, src


async def test_an_upload_chunk_the_registry_took_but_answered_503_restarts_the_upload(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    """A PATCH is never sent again as it was (the registry may have taken it: the same range again
    gets 416); the pusher starts the upload over, and the pushed image pulls back whole."""
    fault = proxy.add(r"PATCH /v2/.*/blobs/uploads/", "taken", status=503)
    repo, src = await _push_through(anon_registry, proxy, tmp_path)
    assert fault.hits == 1
    patches = [path for method, path, _ in proxy.requests if method == "PATCH"]
    assert len(patches) == len(set(patches))  # no chunk sent twice to one upload URL
    image = anon_registry.ref(repo, "v1")
    await pull_image(Store.open(tmp_path / "dst"), image, options(anon_registry.host))
    _check(tmp_path, src, f"{proxy.host}/{repo}:v1", image)


async def test_a_manifest_put_answered_503_is_sent_again(anon_registry: RegistryServer, proxy: FaultProxy,
                                                         tmp_path: Path) -> None:
    """A manifest PUT is idempotent (the same bytes under the same reference): the request is retried."""
    proxy.add(r"PUT /v2/.*/manifests/v1", "status", status=503)
    repo, src = await _push_through(anon_registry, proxy, tmp_path)
    puts = [path for method, path, _ in proxy.requests if method == "PUT" and path.endswith("/manifests/v1")]
    assert len(puts) == 2
    image = anon_registry.ref(repo, "v1")
    await pull_image(Store.open(tmp_path / "dst"), image, options(anon_registry.host))
    _check(tmp_path, src, f"{proxy.host}/{repo}:v1", image)


async def test_an_upload_that_keeps_failing_gives_up_after_the_retries(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.add(r"PATCH /v2/.*/blobs/uploads/", "status", status=500, times=1000)
    with pytest.raises(RegistryUnavailable, match=r"^uploading sha256:[0-9a-f]{64}: registry error 500 "
                                                  r"Internal Server Error, gave up after 2 retries$"):
        await _push_through(anon_registry, proxy, tmp_path, retries=2, max_concurrent_blobs=1)
    patches = [path for method, path, _ in proxy.requests if method == "PATCH"]
    # One blob at a time, so the first to fail ends the push: its upload started 3 times, never a chunk again.
    assert len(patches) == len(set(patches)) == 3
