"""Open blob files shared by every open of the same blob, and reads that never block the trio thread.

A verified blob keeps one fd, shared by all FUSE handles of that blob and kept (up to a bound)
after the last close, so a warm ``open`` costs no worker-thread round trip. Before reuse the fd is
``fstat``-ed: that reads the in-memory inode of a file we hold open and never waits for the disk,
and a changed ctime (someone wrote into the blob) sends the next open back to full verification.
Fds of blobs that gc unlinked are closed on the next poll, so the cache never pins deleted files.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import OrderedDict
from dataclasses import dataclass

from gadgetstore.engine.digest import Digest

Identity = tuple[int, int, int, int, int]


def identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class BlobFd:
    fd: int
    ident: Identity
    refs: int = 0
    cached: bool = True


class BlobFdCache:
    def __init__(self, limit: int = 128) -> None:
        self.limit = limit
        self._fds: OrderedDict[Digest, BlobFd] = OrderedDict()

    def acquire(self, digest: Digest) -> BlobFd | None:
        entry = self._fds.get(digest)
        if entry is None:
            return None
        try:
            st = os.fstat(entry.fd)
            unchanged = identity(st) == entry.ident and st.st_nlink > 0
        except OSError:
            unchanged = False
        if not unchanged:
            self._uncache(digest, entry)
            return None
        self._fds.move_to_end(digest)
        entry.refs += 1
        return entry

    def add(self, digest: Digest, fd: int, ident: Identity) -> BlobFd:
        old = self._fds.get(digest)
        if old is not None:
            self._uncache(digest, old)
        entry = BlobFd(fd, ident, refs=1)
        self._fds[digest] = entry
        while len(self._fds) > self.limit:
            oldest, victim = next(iter(self._fds.items()))
            self._uncache(oldest, victim)
        return entry

    def drop_unlinked(self) -> int:
        """Close idle fds of blobs that gc deleted, so their disk space is really freed."""
        dropped = 0
        for digest, entry in list(self._fds.items()):
            try:
                gone = os.fstat(entry.fd).st_nlink == 0
            except OSError:
                gone = True
            if gone:
                self._uncache(digest, entry)
                dropped += 1
        return dropped

    def release(self, entry: BlobFd) -> None:
        entry.refs -= 1
        if entry.refs <= 0 and not entry.cached:
            _close(entry.fd)

    def _uncache(self, digest: Digest, entry: BlobFd) -> None:
        del self._fds[digest]
        entry.cached = False
        if entry.refs <= 0:
            _close(entry.fd)

    def close_all(self) -> None:
        for digest, entry in list(self._fds.items()):
            entry.refs = 0
            self._uncache(digest, entry)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


_nowait_supported = hasattr(os, "RWF_NOWAIT")


def read_cached(fd: int, size: int, offset: int, file_size: int) -> bytes | None:
    """The bytes if the page cache has all of them (``RWF_NOWAIT``), else None: read in a thread."""
    global _nowait_supported
    if not _nowait_supported:
        return None
    buf = bytearray(min(size, max(0, file_size - offset)))
    if not buf:
        return b""
    try:
        got = os.preadv(fd, [buf], offset, os.RWF_NOWAIT)
    except BlockingIOError:
        return None
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            _nowait_supported = False
            return None
        raise
    return bytes(buf) if got == len(buf) else None
