"""Ranged blob fetches: the probe's choice (one stream or parallel chunks), the running prefix hash
behind both, and resumed partial files — every path ends verified, damage is never published."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gadgetstore.engine import blobstore
from gadgetstore.engine.blobstore import IngestWriter
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.registry import blobfetch, resume
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.fakes import FaultProxy
from tests.support.images import graph_digests, make_gadget_image, pseudo_random, verify_store
from tests.support.registry import RegistryServer, unique_repo

SIZE = 3 * 1024 * 1024 + 777
CHUNK = 256 * 1024


def _opts(host: str) -> TransferOptions:
    return TransferOptions(insecure_registries=frozenset({host}), range_threshold=1024 * 1024, chunk_size=CHUNK,
                           chunk_parallelism=3, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def proxy(anon_registry: RegistryServer) -> Iterator[FaultProxy]:
    server = FaultProxy(anon_registry.host)
    yield server
    server.close()


@pytest.fixture
def stream_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe even small blobs and always find one stream fast enough."""
    monkeypatch.setattr(blobfetch, "PROBE_MIN_SIZE", 0)
    monkeypatch.setattr(blobfetch, "PROBE_MIN_CHUNK", 1)
    monkeypatch.setattr(blobfetch, "STREAM_RATE", 0)


@pytest.fixture
def hashed_at_seal(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many leading bytes each writer of the layer had hashed when seal began (the first is
    the source store's, which builds the image)."""
    seen: list[int] = []
    real = IngestWriter.seal

    def seal(self: IngestWriter, sync: bool = True) -> Digest:
        if self.expected_size == SIZE:
            seen.append(self.hashed)
        return real(self, sync)

    monkeypatch.setattr(IngestWriter, "seal", seal)
    return seen


async def _pushed(registry: RegistryServer, tmp_path: Path) -> tuple[str, bytes, Digest]:
    src = Store.open(tmp_path / "src")
    repo = unique_repo("blobfetch")
    image = registry.ref(repo, "v1")
    make_gadget_image(src, image, layer_size=SIZE, archs=("amd64",))
    await push_image(src, image, _opts(registry.host))
    layer = next(d for d in graph_digests(src, image) if src.blobs.stat(d).st_size == SIZE)
    return repo, pseudo_random(SIZE, f"{image}/amd64"), layer


def _layer_gets(proxy: FaultProxy, layer: Digest) -> list[str]:
    return [headers.get("Range", "") for method, path, headers in proxy.requests
            if method == "GET" and path.endswith(str(layer))]


def _range_bytes(ranges: list[str]) -> int:
    total = 0
    for rng in ranges:
        first, last = rng.removeprefix("bytes=").split("-")
        total += int(last) - int(first) + 1
    return total


async def test_fast_probe_streams_the_rest_in_one_request(anon_registry: RegistryServer, proxy: FaultProxy,
                                                          tmp_path: Path, stream_mode: None,
                                                          hashed_at_seal: list[int]) -> None:
    repo, _, layer = await _pushed(anon_registry, tmp_path)
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert _layer_gets(proxy, layer) == [f"bytes=0-{CHUNK - 1}", f"bytes={CHUNK}-{SIZE - 1}"]
    assert hashed_at_seal[1:] == [SIZE]  # hashed while written: nothing read back at commit
    verify_store(tmp_path / "dst")


async def test_slow_probe_goes_parallel(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobfetch, "PROBE_MIN_SIZE", 0)
    monkeypatch.setattr(blobfetch, "PROBE_MIN_CHUNK", 1)
    monkeypatch.setattr(blobfetch, "STREAM_RATE", float("inf"))
    repo, _, layer = await _pushed(anon_registry, tmp_path)
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    gets = _layer_gets(proxy, layer)
    assert len(gets) == -(-SIZE // CHUNK) and _range_bytes(gets) == SIZE
    verify_store(tmp_path / "dst")


async def test_chunks_landing_ahead_of_a_late_first_chunk_hash_right(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, hashed_at_seal: list[int]) -> None:
    repo, _, _ = await _pushed(anon_registry, tmp_path)
    proxy.add(r"GET /v2/.*/blobs/", "delay", seconds=0.5, range_start=0)  # chunk 0 arrives last
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert proxy.faults[0].hits == 1
    assert hashed_at_seal[1:] == [SIZE]  # the prefix caught up over the chunks that had landed ahead
    verify_store(tmp_path / "dst")


@pytest.mark.parametrize("where", [0, 5 * CHUNK])
async def test_a_corrupt_chunk_is_rejected_then_healed(anon_registry: RegistryServer, proxy: FaultProxy,
                                                       tmp_path: Path, where: int) -> None:
    """Chunk 0 is hashed from memory as it is written; chunk 5 lands ahead and is read back."""
    repo, _, layer = await _pushed(anon_registry, tmp_path)
    proxy.add(r"GET /v2/.*/blobs/", "corrupt", at=1000, range_start=where)
    dst = Store.open(tmp_path / "dst")
    await pull_image(dst, f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert proxy.faults[0].hits == 1
    assert _range_bytes(_layer_gets(proxy, layer)) >= 2 * SIZE - CHUNK  # the damaged try was thrown away
    verify_store(tmp_path / "dst")


async def test_a_corrupt_stream_is_rejected_then_healed(anon_registry: RegistryServer, proxy: FaultProxy,
                                                        tmp_path: Path, stream_mode: None) -> None:
    repo, _, _ = await _pushed(anon_registry, tmp_path)
    proxy.add(r"GET /v2/.*/blobs/", "corrupt", at=SIZE // 2, range_start=CHUNK)
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert proxy.faults[0].hits == 1
    verify_store(tmp_path / "dst")


def _partial(dst: Store, layer: Digest, data: bytes, upto: int) -> IngestWriter:
    """What a killed streamed pull leaves: the first ``upto`` bytes, marked as a ranged download."""
    writer = dst.blobs.writer(layer, SIZE)
    writer.write_at(0, data[:upto])
    resume.mark_ranged(writer)
    return writer


async def test_resumed_stream_fetches_only_the_rest(anon_registry: RegistryServer, proxy: FaultProxy,
                                                    tmp_path: Path, stream_mode: None,
                                                    hashed_at_seal: list[int]) -> None:
    repo, data, layer = await _pushed(anon_registry, tmp_path)
    dst = Store.open(tmp_path / "dst")
    writer = _partial(dst, layer, data, 5 * CHUNK + 10_000)
    await pull_image(dst, f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    gets = _layer_gets(proxy, layer)
    assert len(gets) == 2  # a probe, then the rest as one stream
    assert SIZE - 5 * CHUNK - 10_000 <= _range_bytes(gets) <= SIZE - 5 * CHUNK - 10_000 + resume.BLOCK
    assert hashed_at_seal[1:] == [SIZE]  # adopted bytes were hashed as they were copied over
    assert not writer.temp_path.exists()
    verify_store(tmp_path / "dst")


async def test_a_damaged_partial_is_never_published(anon_registry: RegistryServer, proxy: FaultProxy,
                                                    tmp_path: Path) -> None:
    """Adopted bytes are hashed with the rest: a flipped byte in the partial file fails the digest,
    and the retry starts over from nothing."""
    repo, data, layer = await _pushed(anon_registry, tmp_path)
    dst = Store.open(tmp_path / "dst")
    writer = _partial(dst, layer, data, 6 * CHUNK)
    fd = os.open(writer.temp_path, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes([data[3 * CHUNK + 5] ^ 0x01]), 3 * CHUNK + 5)
    finally:
        os.close(fd)
    await pull_image(dst, f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    gets = _layer_gets(proxy, layer)
    assert _range_bytes(gets) >= SIZE  # the resumed try fetched the rest, the retry all of it
    verify_store(tmp_path / "dst")


@pytest.mark.parametrize("streamed", [True, False])
async def test_batch_buffers_are_reused_only_after_their_hash(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        streamed: bool) -> None:
    """Bodies are received into a few reused buffers; a slow hash must still see each buffer's
    bytes unchanged (reusing one before its hash ended would fail the digest on every try)."""
    monkeypatch.setattr(blobfetch, "PROBE_MIN_SIZE", 0)
    monkeypatch.setattr(blobfetch, "PROBE_MIN_CHUNK", 1)
    monkeypatch.setattr(blobfetch, "STREAM_RATE", 0 if streamed else float("inf"))
    monkeypatch.setattr(blobfetch, "STREAM_BATCH", 64 * 1024)
    monkeypatch.setattr(blobfetch, "CHUNK_BATCH", 32 * 1024)
    monkeypatch.setattr(blobstore, "PARALLEL_HASH_MIN", 1024)
    real_update = blobstore._update_all

    def slow_update(hasher: Any, pieces: Any) -> None:
        time.sleep(0.005)  # the hash thread lags behind the receiver and the writer
        real_update(hasher, pieces)

    monkeypatch.setattr(blobstore, "_update_all", slow_update)
    taken: set[int] = set()
    real_take = blobfetch._Buffers.take

    async def take(self: blobfetch._Buffers) -> bytearray:
        buf = await real_take(self)
        taken.add(id(buf))
        return buf

    monkeypatch.setattr(blobfetch._Buffers, "take", take)
    repo, _, layer = await _pushed(anon_registry, tmp_path)
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    gets = _layer_gets(proxy, layer)
    if streamed:
        assert len(gets) == 2  # no retry: every batch hashed what was received
    else:
        assert len(gets) == -(-SIZE // CHUNK) and _range_bytes(gets) == SIZE
    # a handful of buffers carried every batch: 4 of STREAM_BATCH (the probe's and the stream's),
    # 3 + 1 + 1 + 2 of CHUNK_BATCH (receivers, the first answer, queued, written, hashed)
    assert len(taken) <= (4 if streamed else 4 + 7) < SIZE // (64 * 1024)
    verify_store(tmp_path / "dst")


@pytest.fixture
def disk_writes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Bytes written with O_DIRECT, and background fdatasync calls, during the test."""
    seen = {"direct": 0, "fdatasync": 0}
    real_pwrite, real_fdatasync = os.pwrite, os.fdatasync

    def pwrite(fd: int, data: Any, offset: int) -> int:
        written = real_pwrite(fd, data, offset)
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            seen["direct"] += written
        return written

    def fdatasync(fd: int) -> None:
        seen["fdatasync"] += 1
        real_fdatasync(fd)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(blobfetch, "SYNC_EVERY", 64 * 1024)
    return seen


async def test_a_streamed_blob_bypasses_the_page_cache(anon_registry: RegistryServer, proxy: FaultProxy,
                                                       tmp_path: Path, stream_mode: None,
                                                       disk_writes: dict[str, int]) -> None:
    """Receive buffers are page-aligned, so every whole block of an in-order stream goes to disk
    with O_DIRECT; only the unaligned tail is written buffered, too little for a background sync."""
    repo, _, _ = await _pushed(anon_registry, tmp_path)
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert disk_writes["direct"] == SIZE - SIZE % blobstore.DIRECT_ALIGN
    assert disk_writes["fdatasync"] == 0
    verify_store(tmp_path / "dst")


async def test_chunks_landing_ahead_are_buffered_and_synced_early(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, disk_writes: dict[str, int]) -> None:
    """Parallel chunks that land ahead of the hashed prefix stay in the page cache (they are read
    back for the hash); their writeback starts before the commit."""
    repo, _, _ = await _pushed(anon_registry, tmp_path)
    proxy.add(r"GET /v2/.*/blobs/", "delay", seconds=2.0, range_start=CHUNK)  # chunks 2.. land ahead of 1
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert proxy.faults[0].hits == 1
    assert disk_writes["direct"] <= 2 * CHUNK  # at most chunks 0 and 1, written at the prefix
    assert disk_writes["fdatasync"] >= 1
    verify_store(tmp_path / "dst")
