"""Durable file-system primitives: fsync'd atomic replace, directory sync, safe opens, bounded reads."""

from __future__ import annotations

import contextlib
import functools
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import GadgetStoreError, StoreError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    """fsync a file we no longer hold open (its data and inode, not its name)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reports_writeback_errors() -> bool:
    """syncfs returns writeback errors only since Linux 5.8; before, it says 0 after a lost write."""
    try:
        major, minor = (int(part) for part in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


@functools.cache
def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs where it can be trusted to report a lost write, else None. Loaded on first
    use, from the libc the interpreter runs on (no library search, no ``ldconfig`` subprocess)."""
    if not _reports_writeback_errors():
        return None
    import ctypes

    try:
        syncfs: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    return syncfs


def sync_filesystem(path: Path) -> bool:
    """``syncfs(2)`` on the file system holding ``path``: every dirty page and inode there is on disk
    when it returns. False where there is no ``syncfs`` that reports errors (before Linux 5.8):
    the caller then fsyncs file by file."""
    syncfs = _load_syncfs()
    if syncfs is None:
        return False
    import ctypes

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)
    return True


class Replacement:
    """A temporary file beside ``path`` that takes its place, whole, on :meth:`commit`.

    Until then ``path`` keeps its old bytes; :meth:`abort` removes the temporary file. The caller
    writes to :attr:`fd` and never closes it: commit and abort do.
    """

    def __init__(self, path: Path, mode: int = 0o644) -> None:
        import tempfile

        self.path, self.mode = path, mode
        self.fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self._temp: str | None = name

    def commit(self, durable: bool = True) -> None:
        """fsync the bytes, rename them over ``path``, fsync the directory (no fsync unless ``durable``)."""
        assert self._temp is not None, "Replacement committed twice"
        os.fchmod(self.fd, self.mode)
        if durable:
            os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self._temp, self.path)
        self._temp = None
        if durable:
            fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Close and remove the temporary file, if it is still there; never raises."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        if self._temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)
            self._temp = None


def atomic_write(path: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write ``data`` so that ``path`` holds either the old or the new bytes, never a mix.

    ``durable=False`` is for caches that check what they read: readers still never see a mix, but
    after a crash the file may be missing, empty or short.
    """
    replacement = Replacement(path, mode)
    try:
        with open(replacement.fd, "wb", closefd=False) as out:
            out.write(data)
        replacement.commit(durable)
    except BaseException:
        replacement.abort()
        raise


def ensure_real_dir(path: Path, mode: int = 0o755) -> bool:
    """Create ``path`` if needed and refuse it when it is a symlink or not a directory; True when it
    was created here (its parent then holds a new name to make durable)."""
    try:
        os.mkdir(path, mode)
        created = True
    except FileExistsError:
        created = False
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path} is not a directory (symlinks are refused)")
    return created


def ensure_durable_dir(path: Path, mode: int = 0o755) -> bool:
    """:func:`ensure_real_dir`, and when the directory is new, its name made durable in its parent:
    a blob renamed into a directory whose own entry a crash can lose is lost with it."""
    created = ensure_real_dir(path, mode)
    if created:
        fsync_dir(path.parent)
    return created


def open_regular(path: Path) -> int:
    """Open for reading without following a symlink, and insist on a regular file (without
    waiting: opening a fifo for reading blocks until a writer comes, unless non-blocking)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"{path} is not a regular file")
    return fd


def read_utf8(source: BinaryIO, limit: int, what: str, error: type[GadgetStoreError]) -> str:
    """At most ``limit`` bytes of UTF-8 text, never allocating more than ``limit + 1``.

    A larger input, or one that is not UTF-8, raises ``error`` naming ``what``.
    """
    raw = source.read(limit + 1)
    if len(raw) > limit:
        raise error(f"{what} is larger than {limit} bytes")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise error(f"{what} is not UTF-8") from None
