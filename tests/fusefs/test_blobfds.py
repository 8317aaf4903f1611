"""The shared blob fd cache and the never-blocking page-cache read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gadgetstore.engine.digest import Digest
from gadgetstore.fusefs.blobfds import BlobFdCache, identity, read_cached


def _open(path: Path, data: bytes) -> tuple[int, tuple[int, int, int, int, int]]:
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    return fd, identity(os.fstat(fd))


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_shared_fd_and_refcounts(tmp_path: Path) -> None:
    cache = BlobFdCache(limit=1)
    a, b = Digest("sha256", "a" * 64), Digest("sha256", "b" * 64)
    first = cache.add(a, *_open(tmp_path / "a", b"aaa"))
    assert cache.acquire(a) is first and first.refs == 2
    cache.add(b, *_open(tmp_path / "b", b"bbb"))  # evicts a, still referenced: stays open
    assert cache.acquire(a) is None and _is_open(first.fd)
    cache.release(first)
    cache.release(first)
    assert not _is_open(first.fd)
    cache.close_all()


def test_a_changed_blob_file_is_not_reused(tmp_path: Path) -> None:
    cache = BlobFdCache()
    digest = Digest("sha256", "c" * 64)
    entry = cache.add(digest, *_open(tmp_path / "c", b"ccc"))
    cache.release(entry)
    with open(tmp_path / "c", "r+b") as f:  # in-place damage changes ctime/mtime
        os.utime(f.fileno(), ns=(1, 1))
    assert cache.acquire(digest) is None
    assert not _is_open(entry.fd)


def test_read_cached(tmp_path: Path) -> None:
    fd, _ = _open(tmp_path / "d", b"0123456789")
    try:
        if not hasattr(os, "RWF_NOWAIT"):
            pytest.skip("os.RWF_NOWAIT is not available on this platform")
        assert read_cached(fd, 4, 2, 10) == b"2345"
        assert read_cached(fd, 100, 8, 10) == b"89"
        assert read_cached(fd, 4, 10, 10) == b""
    finally:
        os.close(fd)


def test_deleted_blobs_are_not_kept_open(tmp_path: Path) -> None:
    cache = BlobFdCache()
    kept, idle = Digest("sha256", "e" * 64), Digest("sha256", "f" * 64)
    in_use = cache.add(kept, *_open(tmp_path / "e", b"eee"))
    unused = cache.add(idle, *_open(tmp_path / "f", b"fff"))
    cache.release(unused)
    os.unlink(tmp_path / "e")
    os.unlink(tmp_path / "f")
    assert cache.drop_unlinked() == 2
    assert not _is_open(unused.fd)
    assert _is_open(in_use.fd)  # an open FUSE handle keeps reading until it is released
    cache.release(in_use)
    assert not _is_open(in_use.fd)
