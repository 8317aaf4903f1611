"""Ranged blob fetches: even Range chunks in parallel (or a whole body when Range is ignored), the
running hash over them in order, and resumed partial files — every path ends verified, damage is
never published."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

from gadgetstore.engine import blobstore
from gadgetstore.engine.blobstore import IngestWriter
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import StoreError
from gadgetstore.engine.ingest import resume
from gadgetstore.engine.registry import blobfetch
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.store import Store
from tests.support.fakes import FaultProxy
from tests.support.images import graph_digests, pseudo_random, verify_store
from tests.support.registry import RegistryServer, push_gadget_image

SIZE = 3 * 1024 * 1024 + 777
CHUNK = 256 * 1024


def _opts(host: str) -> TransferOptions:
    return TransferOptions(insecure_registries=frozenset({host}), range_threshold=1024 * 1024, chunk_size=CHUNK,
                           chunk_parallelism=3, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def read_back(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The byte ranges of the layer's ingest file read back for its hash (nothing, when every
    batch was hashed from the buffer it arrived in)."""
    seen: list[tuple[int, int]] = []
    real = IngestWriter._hash_file

    def hash_file(self: IngestWriter, start: int, end: int) -> None:
        if self.expected_size == SIZE and end > start:
            seen.append((start, end))
        real(self, start, end)

    monkeypatch.setattr(IngestWriter, "_hash_file", hash_file)
    return seen


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
    repo = await push_gadget_image(registry, src, "blobfetch", _opts(registry.host), layer_size=SIZE, archs=("amd64",))
    image = registry.ref(repo, "v1")
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


def _even_chunks() -> list[str]:
    return [f"bytes={off}-{min(SIZE, off + CHUNK) - 1}" for off in range(0, SIZE, CHUNK)]


async def test_even_chunks_are_fetched_once_each(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path,
                                                 hashed_at_seal: list[int]) -> None:
    repo, _, layer = await _pushed(anon_registry, tmp_path)
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert Counter(_layer_gets(proxy, layer)) == Counter(_even_chunks())  # every chunk once, no probe
    assert hashed_at_seal[1:] == [SIZE]  # hashed as the chunks came in: nothing left for the commit
    verify_store(tmp_path / "dst")


async def test_batches_in_order_are_hashed_from_memory(anon_registry: RegistryServer, proxy: FaultProxy,
                                                       tmp_path: Path, hashed_at_seal: list[int],
                                                       read_back: list[tuple[int, int]],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker: no batch ever waits behind a gap, so none is spilled, however slow the hash
    (a worker out of buffers waits for the hash instead)."""
    real_hash = IngestWriter.hash_next

    def slow_hash(self: IngestWriter, offset: int, data: memoryview) -> int:
        time.sleep(0.01)  # the receiver runs out of buffers long before the hash catches up
        return real_hash(self, offset, data)

    monkeypatch.setattr(IngestWriter, "hash_next", slow_hash)
    repo, _, layer = await _pushed(anon_registry, tmp_path)
    options = _opts(proxy.host)
    options.chunk_parallelism = 1
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", options)
    assert _layer_gets(proxy, layer) == _even_chunks()
    assert hashed_at_seal[1:] == [SIZE] and read_back == []  # each batch hashed from the buffer it came in
    verify_store(tmp_path / "dst")


async def test_a_stalled_first_chunk_does_not_hold_the_others(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, hashed_at_seal: list[int],
        read_back: list[tuple[int, int]]) -> None:
    """Chunk 0 stalls after its head: the other workers fetch every other chunk meanwhile (their
    buffers spill to the file once the hash cannot use them), then chunk 0 is retried and the hash
    reads the spilled batches back."""
    repo, _, layer = await _pushed(anon_registry, tmp_path)
    stalled = proxy.add(r"GET /v2/.*/blobs/", "stall", at=1000, range_start=0)
    others = [proxy.add(r"GET /v2/.*/blobs/", "delay", seconds=0.0, range_start=off)  # marks their arrival
              for off in range(CHUNK, SIZE, CHUNK)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pull_image, Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
        for fault in others:
            assert await trio.to_thread.run_sync(fault.arrived.wait, 20)
        assert stalled.hits == 1 and not proxy.released.is_set()  # all of them while chunk 0 is held
        proxy.release()
    gets = _layer_gets(proxy, layer)
    assert Counter(gets) == Counter(_even_chunks()) + Counter([_even_chunks()[0]])  # chunk 0 twice, the rest once
    assert hashed_at_seal[1:] == [SIZE]
    assert read_back and all(start % CHUNK == 0 for start, _ in read_back)  # whole spilled batches only
    verify_store(tmp_path / "dst")


async def test_a_plain_200_is_taken_whole(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path,
                                          hashed_at_seal: list[int], read_back: list[tuple[int, int]]) -> None:
    repo, _, layer = await _pushed(anon_registry, tmp_path)
    proxy.add(r"GET /v2/.*/blobs/", "ignore-range", range_start=0)
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert _layer_gets(proxy, layer) == [_even_chunks()[0]]  # the answer was the whole blob: nothing more asked
    assert hashed_at_seal[1:] == [SIZE] and read_back == []
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


def _partial(dst: Store, layer: Digest, data: bytes, upto: int) -> IngestWriter:
    """What a killed streamed pull leaves: the first ``upto`` bytes, marked as a ranged download."""
    writer = dst.blobs.writer(layer, SIZE)
    writer.write_at(0, data[:upto])
    resume.mark_ranged(writer)
    return writer


async def test_a_resumed_pull_fetches_only_the_rest(anon_registry: RegistryServer, proxy: FaultProxy,
                                                     tmp_path: Path, hashed_at_seal: list[int]) -> None:
    repo, data, layer = await _pushed(anon_registry, tmp_path)
    dst = Store.open(tmp_path / "dst")
    writer = _partial(dst, layer, data, 5 * CHUNK + 10_000)
    await pull_image(dst, f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    gets = _layer_gets(proxy, layer)
    assert len(gets) == len(_even_chunks()) - 5  # the rest of chunk 5, then chunks 6.. once each
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


async def test_batch_buffers_are_reused_only_after_their_hash(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bodies are received into a few reused buffers per worker; a slow hash must still see each
    buffer's bytes unchanged (reusing one before its hash ended would fail the digest on every try)."""
    monkeypatch.setattr(blobfetch, "CHUNK_BATCH", 32 * 1024)
    real_hash = IngestWriter.hash_next

    def slow_hash(self: IngestWriter, offset: int, data: memoryview) -> int:
        time.sleep(0.002)  # the hash thread lags behind the receivers and the writer
        return real_hash(self, offset, data)

    monkeypatch.setattr(IngestWriter, "hash_next", slow_hash)
    taken: set[int] = set()
    real_take = blobfetch._Buffers.take

    async def take(self: blobfetch._Buffers, spill: Any) -> Any:
        buf = await real_take(self, spill)
        taken.add(id(buf))
        return buf

    monkeypatch.setattr(blobfetch._Buffers, "take", take)
    repo, _, layer = await _pushed(anon_registry, tmp_path)
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert Counter(_layer_gets(proxy, layer)) == Counter(_even_chunks())  # no retry: every hash saw what arrived
    # 3 workers, each with a chunk's worth of batches plus one: 3 × (256 KiB / 32 KiB + 1)
    assert len(taken) <= 3 * (CHUNK // (32 * 1024) + 1) < SIZE // (32 * 1024)
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


async def test_every_chunk_bypasses_the_page_cache(anon_registry: RegistryServer, proxy: FaultProxy,
                                                   tmp_path: Path, disk_writes: dict[str, int]) -> None:
    """Receive buffers are page-aligned and chunks start on a block, so every whole block goes to
    disk with O_DIRECT wherever it lands; only the unaligned tail is written buffered, too little
    for a background sync."""
    repo, _, _ = await _pushed(anon_registry, tmp_path)
    await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert disk_writes["direct"] == SIZE - SIZE % blobstore.DIRECT_ALIGN
    assert disk_writes["fdatasync"] == 0
    verify_store(tmp_path / "dst")


def _fail_layer_call(monkeypatch: pytest.MonkeyPatch, method: str, at: int, err: OSError) -> None:
    """The ``at``-th call of IngestWriter ``method`` for the layer raises ``err``."""
    real = getattr(IngestWriter, method)
    calls = 0

    def failing(self: IngestWriter, offset: int, data: memoryview) -> int:
        nonlocal calls
        if self.expected_size == SIZE:
            calls += 1
            if calls == at:
                raise err
        return real(self, offset, data)

    monkeypatch.setattr(IngestWriter, method, failing)


@pytest.mark.parametrize(("method", "err"), [
    ("write_unhashed", OSError(errno.ENOSPC, "No space left on device")),
    ("hash_next", OSError(errno.EIO, "Input/output error")),
])
async def test_a_write_or_hash_that_fails_mid_blob_fails_the_pull(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        method: str, err: OSError) -> None:
    """The write and the hash each run in a thread of their own for the whole blob: when one of them
    fails, the other stops too, and the pull ends with that error; nothing is published. A thread
    left waiting for batches that will not come would hang the pull (a thread call cannot be
    cancelled), and ``fail_after`` would fail the test."""
    repo, _, layer = await _pushed(anon_registry, tmp_path)
    _fail_layer_call(monkeypatch, method, 4, err)
    dst = Store.open(tmp_path / "dst")
    with trio.fail_after(30), pytest.raises(StoreError, match=f"^{err.strerror}$"):
        await pull_image(dst, f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    assert not dst.blobs.has(layer)


async def test_big_blobs_do_not_take_the_threads_the_rest_of_the_pull_needs(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    """Each ranged blob holds two threads for as long as it downloads; with one thread left for
    everything else, two such blobs at once and the small blobs beside them still finish. Were the two
    threads taken from Trio's default limiter, each blob's write thread would hold the one slot and its
    hash thread would wait for it for ever."""
    repo = await push_gadget_image(anon_registry, Store.open(tmp_path / "src"), "blobfetch", _opts(anon_registry.host),
                                   layer_size=SIZE, archs=("amd64", "arm64"))
    trio.to_thread.current_default_thread_limiter().total_tokens = 1
    with trio.fail_after(30):
        await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
    verify_store(tmp_path / "dst")
