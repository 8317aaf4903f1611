"""Ranged downloads write page-aligned buffers that extend the hashed prefix with O_DIRECT: the
published blob must be the same bytes whichever path each piece took, bytes that land ahead stay
in the page cache (they are read back for the hash), and a file system that refuses O_DIRECT, or
a short direct write, must only cost the shortcut."""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import pytest

from gadgetstore.engine import blobstore
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store
from tests.support.images import pseudo_random

CHUNK = 2 * blobstore.DIRECT_MIN
DIRECT_ALIGN = blobstore.DIRECT_ALIGN
DIRECT_ALIGN_TAIL = 1000  # a short write that ends mid-page
TAIL = 12_345  # the end of a blob is not block-aligned: it must go buffered
DATA = pseudo_random(5 * CHUNK + TAIL, "direct-ingest")
DIGEST = Digest.of_bytes(DATA)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "s")
    probe = store.blobs.writer(direct=True)
    supported = probe.direct
    probe.abort()
    if not supported:
        pytest.skip(f"{tmp_path} is on a file system that refuses O_DIRECT")
    return store


def _aligned(data: bytes) -> memoryview:
    """``data`` in an anonymous mapping: page-aligned, as blobfetch's receive buffers are."""
    buf = mmap.mmap(-1, len(data))
    buf[:] = data
    return memoryview(buf)


class _PwriteSpy:
    """Counts the bytes each file descriptor was given; optionally fails the direct one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_errno: int | None = None, fail_times: int = 1_000,
                 short_by: int = 0) -> None:
        self.direct_fd: int | None = None
        self.direct_bytes = 0
        self.fail_errno = fail_errno
        self.fail_times = fail_times
        self.short_by = short_by  # the first direct write stops this many bytes short (mid-page)
        self._real = os.pwrite
        monkeypatch.setattr(blobstore.os, "pwrite", self)

    def __call__(self, fd: int, data: memoryview, offset: int) -> int:
        if fd != self.direct_fd:
            return self._real(fd, data, offset)
        if self.fail_errno is not None and self.fail_times > 0:
            self.fail_times -= 1
            raise OSError(self.fail_errno, os.strerror(self.fail_errno))
        if self.short_by:  # O_DIRECT takes whole blocks only: write one block less, report fewer still
            written, self.short_by = self._real(fd, data[:len(data) - DIRECT_ALIGN], offset) - self.short_by, 0
        else:
            written = self._real(fd, data, offset)
        self.direct_bytes += written
        return written


def _writer(store: Store, spy: _PwriteSpy) -> blobstore.IngestWriter:
    writer = store.blobs.writer(DIGEST, len(DATA), direct=True)
    spy.direct_fd = writer._direct_fd
    return writer


@pytest.mark.parametrize(("order", "direct_chunks"), [([0, 1, 2, 3, 4, 5], 5), ([5, 3, 1, 0, 2, 4], 3)])
def test_aligned_prefix_chunks_go_direct_and_the_rest_buffered(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                               order: list[int], direct_chunks: int) -> None:
    """In order, every whole chunk goes direct. Out of order, 3, 1 (ahead) and the tail go
    buffered; 0, then 2 and 4 (each at the prefix once the ones ahead were caught up) go direct."""
    spy = _PwriteSpy(monkeypatch)
    writer = _writer(store, spy)
    starts = list(range(0, len(DATA), CHUNK))
    for i in order:
        start = starts[i]
        piece = DATA[start:start + CHUNK]
        # a whole chunk from an aligned buffer; the unaligned tail as plain bytes (adopted on resume)
        writer.write_at(start, _aligned(piece) if len(piece) == CHUNK else piece)
    assert writer.hashed == len(DATA)  # what landed ahead was read back when the prefix reached it
    assert spy.direct_bytes == direct_chunks * CHUNK
    assert writer.buffered_bytes == len(DATA) - direct_chunks * CHUNK
    assert writer.commit() == DIGEST
    assert store.blobs.rehash(DIGEST) == DIGEST


def test_unaligned_offsets_addresses_or_readonly_bytes_are_written_buffered(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _PwriteSpy(monkeypatch)
    writer = _writer(store, spy)
    writer.write_at(0, _aligned(b"\0" + DATA[:CHUNK])[1:])  # aligned file offset, memory one byte off
    writer.write_at(CHUNK, DATA[CHUNK:CHUNK + 100])
    writer.write_at(CHUNK + 100, _aligned(DATA[CHUNK + 100:2 * CHUNK]))  # aligned memory, unaligned offset
    writer.write_at(2 * CHUNK, DATA[2 * CHUNK:])  # aligned offset, but bytes cannot show their address
    assert spy.direct_bytes == 0
    assert writer.direct  # nothing was refused: these pieces just do not qualify
    assert writer.commit() == DIGEST


def test_a_short_direct_write_is_finished_buffered(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _PwriteSpy(monkeypatch, short_by=DIRECT_ALIGN_TAIL)
    writer = _writer(store, spy)
    writer.writev_at(0, [_aligned(DATA[:CHUNK]), _aligned(DATA[CHUNK:2 * CHUNK])])
    writer.write_at(2 * CHUNK, DATA[2 * CHUNK:])
    assert spy.direct_bytes == 2 * CHUNK - DIRECT_ALIGN - DIRECT_ALIGN_TAIL  # the second piece still went direct
    assert writer.direct
    assert writer.commit() == DIGEST


@pytest.mark.parametrize("refusal", [errno.EINVAL, errno.EOPNOTSUPP])
def test_a_refused_direct_write_falls_back_to_the_page_cache(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                             refusal: int) -> None:
    spy = _PwriteSpy(monkeypatch, fail_errno=refusal)
    writer = _writer(store, spy)
    for start in range(0, len(DATA), CHUNK):
        writer.write_at(start, _aligned(DATA[start:start + CHUNK]))
    assert not writer.direct  # given up after the first refusal, not retried per batch
    assert writer.commit() == DIGEST
    assert store.blobs.rehash(DIGEST) == DIGEST


def test_a_full_disk_under_a_direct_write_is_an_error_not_a_fallback(store: Store,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _PwriteSpy(monkeypatch, fail_errno=errno.ENOSPC)
    writer = _writer(store, spy)
    with pytest.raises(OSError) as info:
        writer.write_at(0, _aligned(DATA[:CHUNK]))
    assert info.value.errno == errno.ENOSPC
    writer.abort()
    assert not store.blobs.has(DIGEST)
    assert store.blobs.ingest_files() == []


def test_bytes_hashed_but_not_written_are_hashed_again_at_seal(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash of a batch starts before its write; when the direct write fails (EIO), the caller's
    retry rewrites the same offset, and the published digest must still be the file's, not one
    that counted the first chunk twice."""
    spy = _PwriteSpy(monkeypatch, fail_errno=errno.EIO, fail_times=1)
    writer = _writer(store, spy)
    first = _aligned(DATA[:CHUNK])
    with pytest.raises(OSError):
        writer.write_at(0, first)
    for start in range(0, len(DATA), CHUNK):
        writer.write_at(start, _aligned(DATA[start:start + CHUNK]) if start + CHUNK <= len(DATA) else DATA[start:])
    assert writer.hashed == 0  # the running hash was given up: seal reads the whole file
    assert writer.commit() == DIGEST
