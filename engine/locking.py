"""Advisory file locks of a store: the one place that opens a lock file.

Every store has two locks, reached through :class:`StoreLocks` (``store.locks``):

- the **index lock**, ``index.json.lock``, the file ``ig`` locks too (gofrs/flock: opened
  ``O_RDONLY|O_CREAT`` with mode 0600, then ``flock``). Writers hold it exclusively while they read
  and change the tags (the journal, or index.json in a layout shared with ig); readers of a shared
  layout hold it shared while they read index.json, where they may open it.
- the **gc lease**: every writer that commits blobs before tagging them holds it shared, from its
  first blob to its last tag, and gc holds it exclusively, so gc never deletes a blob that a running
  pull or import has committed but not yet tagged. In gadgetstore's own store it is ``gc.lock``; in
  a layout shared with ig it is the ``ingest/`` directory itself, so that nothing is added to ig's
  store (ig never locks ``ingest/``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .fsutil import ensure_real_dir

_LOCK_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
# What keeps a reader from opening the index lock: it is not there (and a reader creates nothing),
# or belongs to someone else (ig's is root's, mode 0600), or is a symlink.
_UNOPENABLE = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.ELOOP})


@contextlib.contextmanager
def flocked(path: Path, exclusive: bool = True) -> Iterator[None]:
    """``flock`` on ``path``, created (0600) when missing, as gofrs/flock opens it."""
    fd = os.open(path, _LOCK_FLAGS | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _try_exclusive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class StoreLocks:
    """The index lock and the gc lease of one store (see the module docstring).

    ``lease_dir`` names a directory to lock as the lease (a layout shared with ig) instead of the
    file ``lease_file`` (gadgetstore's own store); a writer creates that directory as oras does (0755).
    """

    def __init__(self, index_lock: Path, lease_file: Path | None = None, lease_dir: Path | None = None) -> None:
        assert (lease_file is None) != (lease_dir is None), "one lease: a file or a directory"
        self.index_lock = index_lock
        self.lease_file = lease_file
        self.lease_dir = lease_dir

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """The index lock, exclusively: for whoever changes the tags (blocks as ig does)."""
        return flocked(self.index_lock, exclusive=True)

    @contextlib.contextmanager
    def shared(self) -> Iterator[bool]:
        """The index lock, shared, for a reader: True when held.

        Nothing is created: a reader that cannot open the lock file (none yet, or ig's own, which
        is root's and 0600) reads without it and yields False; it must then cope with a file being
        rewritten under it (see :func:`.indexjson.load_index`).
        """
        try:
            fd = os.open(self.index_lock, _LOCK_FLAGS)
        except OSError as err:
            if err.errno not in _UNOPENABLE:
                raise
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """The gc lease, shared: held by a writer from its first blob commit to its last tag."""
        fd = self._open_lease()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        """The gc lease, exclusively: no writer is between a blob commit and its tag meanwhile."""
        fd = self._open_lease()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def try_collecting(self) -> Iterator[bool]:
        """:meth:`collecting` if no writer holds the lease now (True), else False at once."""
        fd = self._open_lease()
        try:
            yield _try_exclusive(fd)
        finally:
            os.close(fd)

    def _open_lease(self) -> int:
        if self.lease_dir is not None:
            ensure_real_dir(self.lease_dir)
            return os.open(self.lease_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        assert self.lease_file is not None
        return os.open(self.lease_file, _LOCK_FLAGS | os.O_CREAT, 0o600)
