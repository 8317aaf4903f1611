"""IngestWriter hashes the filled prefix as it is written; whatever order bytes arrive in, the
digest checked at seal must be the digest of the file that gets published."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gadgetstore.engine import blobstore
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import DigestMismatch
from gadgetstore.engine.store import Store
from tests.support.images import pseudo_random

CHUNK = 300_000  # above PARALLEL_HASH_MIN: prefix writes take the helper-thread path
DATA = pseudo_random(7 * CHUNK + 12_345, "ingest-hashing")
DIGEST = Digest.of_bytes(DATA)


def _chunks(order: list[int]) -> list[tuple[int, bytes]]:
    starts = list(range(0, len(DATA), CHUNK))
    return [(starts[i], DATA[starts[i]:starts[i] + CHUNK]) for i in order]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "s")


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1, 0], [2, 0, 5, 1, 7, 3, 6, 4]])
def test_out_of_order_chunks_hash_right_without_reading_back_at_seal(store: Store, order: list[int]) -> None:
    writer = store.blobs.writer(DIGEST, len(DATA))
    for offset, data in _chunks(order):
        writer.write_at(offset, data)
    assert writer.hashed == len(DATA)  # extents that landed ahead were caught up as the gap closed
    assert writer.commit() == DIGEST
    assert store.blobs.rehash(DIGEST) == DIGEST


def test_small_pieces_and_writev_batches_hash_right(store: Store) -> None:
    writer = store.blobs.writer(DIGEST, len(DATA))
    half = len(DATA) // 2
    writer.writev_at(half, [DATA[half:half + 10], DATA[half + 10:]])
    for pos in range(0, half, 1000):
        writer.write_at(pos, DATA[pos:min(half, pos + 1000)])
    assert writer.commit() == DIGEST


def test_wrong_bytes_hashed_from_memory_are_rejected(store: Store) -> None:
    bad = bytearray(DATA[:CHUNK])
    bad[1234] ^= 0x01
    writer = store.blobs.writer(DIGEST, len(DATA))
    writer.write_at(0, bytes(bad))  # at the prefix: hashed from this buffer, never read back
    for offset, data in _chunks([1, 2, 3, 4, 5, 6, 7]):
        writer.write_at(offset, data)
    with pytest.raises(DigestMismatch):
        writer.commit()
    assert not store.blobs.has(DIGEST)
    writer.abort()
    assert not writer.temp_path.exists()


def test_overwriting_the_hashed_prefix_is_caught(store: Store) -> None:
    """A second write over already-hashed bytes: the file now differs from what was hashed."""
    writer = store.blobs.writer(DIGEST, len(DATA))
    for offset, data in _chunks(list(range(8))):
        writer.write_at(offset, data)
    writer.write_at(CHUNK + 5, b"\x00")
    with pytest.raises(DigestMismatch):
        writer.commit()
    assert not store.blobs.has(DIGEST)


def test_rewriting_the_hashed_prefix_with_the_same_bytes_still_commits(store: Store) -> None:
    writer = store.blobs.writer(DIGEST, len(DATA))
    for offset, data in _chunks(list(range(8))):
        writer.write_at(offset, data)
    writer.write_at(CHUNK, DATA[CHUNK:2 * CHUNK])  # a retried chunk: seal re-reads the whole file
    assert writer.hashed == 0
    assert writer.commit() == DIGEST


def test_bytes_that_landed_ahead_are_hashed_from_the_file(store: Store) -> None:
    """What lands ahead of the prefix is read back from disk, so damage to it there is seen."""
    writer = store.blobs.writer(DIGEST, len(DATA))
    for offset, data in _chunks([1, 2, 3, 4, 5, 6, 7]):
        writer.write_at(offset, data)
    fd = os.open(writer.temp_path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\xff", 3 * CHUNK + 7)
    finally:
        os.close(fd)
    writer.write_at(0, DATA[:CHUNK])
    with pytest.raises(DigestMismatch):
        writer.commit()


def test_a_hole_left_by_a_failed_write_is_not_covered_by_the_hash(store: Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The prefix write is hashed while written; if the write fails, those hashed bytes are not in
    the file, and a writer that carries on must not publish the hole."""
    real = os.pwrite
    calls = {"n": 0}

    def failing_once(fd: int, data: bytes, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(blobstore.os, "pwrite", failing_once)
    writer = store.blobs.writer(DIGEST, len(DATA))
    with pytest.raises(OSError):
        writer.write_at(0, DATA[:CHUNK])
    for offset, data in _chunks([1, 2, 3, 4, 5, 6, 7]):
        writer.write_at(offset, data)
    with pytest.raises(DigestMismatch):
        writer.commit()


def test_short_writes_are_completed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.pwrite
    monkeypatch.setattr(blobstore.os, "pwrite", lambda fd, data, offset: real(fd, bytes(data)[:777], offset))
    writer = store.blobs.writer(DIGEST, len(DATA))
    for offset, data in _chunks([3, 0, 1, 2, 4, 5, 6, 7]):
        writer.write_at(offset, data)
    assert writer.commit() == DIGEST


def test_sequential_write_still_hashes_inline(store: Store) -> None:
    writer = store.blobs.writer(DIGEST, len(DATA))
    for pos in range(0, len(DATA), 65_536):
        writer.write(DATA[pos:pos + 65_536])
    assert writer.hashed == len(DATA)
    assert writer.commit() == DIGEST
