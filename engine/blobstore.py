"""The blob half of the store: ``blobs/<alg>/<hex>``, written only through ``ingest/``.

A blob becomes visible by one ``rename`` after its bytes were counted, hashed, fsync'd and made
read-only, so a reader can never see a partial blob. Two writers of the same digest each write
their own temporary file; whichever renames last replaces identical bytes, and one file remains.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .digest import Digest
from .errors import DigestMismatch, GadgetStoreError, ImageNotFound, IntegrityError, StoreError
from .faults import crash_point
from .fsutil import ensure_durable_dir, ensure_real_dir, fsync_dir, open_regular

if TYPE_CHECKING:  # the thread pool is loaded by the first write that needs it
    from concurrent.futures import Future, ThreadPoolExecutor

READ_CHUNK = 1024 * 1024
PARALLEL_HASH_MIN = 256 * 1024  # smaller writes are hashed inline: a thread hop would cost more
# Big buffers go to the page cache in slices of this size: a write(2) of a few MiB costs the kernel
# several times the CPU of the same bytes in smaller calls (benchmarks/RESULTS.md, "write(2) size").
WRITE_SLICE = 256 * 1024
HASH_BACKLOG = 1  # prefix batches whose hash may still run behind their write
# O_DIRECT needs the file offset, the length and the memory address aligned to the block size; a
# page is a multiple of every block size we meet. Smaller pieces are not worth a synchronous disk write.
DIRECT_ALIGN = 4096
DIRECT_MIN = 256 * 1024
# How a file system or device says no to an O_DIRECT write it cannot take (alignment, no support).
DIRECT_REFUSED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})
INGEST_PREFIX = "ingest-"


class BlobNotFound(ImageNotFound):
    pass


class BlobStore:
    """Blob files of one store root; all paths are built from validated :class:`Digest` values."""

    def __init__(self, root: Path, ingest_mode: int = 0o700) -> None:
        """``ingest_mode``: how ``ingest/`` is made; 0755 in a layout shared with ig, as oras makes it."""
        self.root = root
        self.blobs_dir = root / "blobs"
        self.ingest_dir = root / "ingest"
        self.ingest_mode = ingest_mode
        self._real_dirs: set[Path] = set()  # checked to be real directories by this process

    def create_dirs(self) -> None:
        ensure_durable_dir(self.blobs_dir)
        ensure_durable_dir(self.blobs_dir / "sha256")
        ensure_real_dir(self.ingest_dir, self.ingest_mode)  # temporary files only: its name need not last

    def ensure_dir(self, path: Path) -> None:
        """:func:`ensure_durable_dir` once per directory and process: a pull publishes hundreds of
        blobs into ``blobs/sha256``, which need not be created and checked for each."""
        if path not in self._real_dirs:
            ensure_durable_dir(path)
            self._real_dirs.add(path)

    def path(self, digest: Digest) -> Path:
        return self.blobs_dir / digest.algorithm / digest.hex

    def stat(self, digest: Digest) -> os.stat_result | None:
        try:
            st = os.lstat(self.path(digest))
        except FileNotFoundError:
            return None
        return st if stat.S_ISREG(st.st_mode) else None

    def has(self, digest: Digest) -> bool:
        return self.stat(digest) is not None

    def open(self, digest: Digest) -> BinaryIO:
        try:
            fd = open_regular(self.path(digest))
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in the store") from None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise StoreError(f"blob {digest} is a symlink; refusing to follow it") from None
            raise
        return os.fdopen(fd, "rb")

    def read(self, digest: Digest, max_size: int | None = None, verify: bool = True) -> bytes:
        """Read a whole blob (manifests, configs); verified, since they steer what we trust next."""
        with self.open(digest) as f:
            size = os.fstat(f.fileno()).st_size
            if max_size is not None and size > max_size:
                raise IntegrityError(f"blob {digest} is {size} bytes, more than the {max_size} allowed")
            data = f.read()
        if verify and Digest.of_bytes(data, digest.algorithm) != digest:
            raise DigestMismatch(f"blob {digest} is damaged: its content has another digest")
        return data

    def rehash(self, digest: Digest) -> Digest:
        hasher = digest.hasher()
        with self.open(digest) as f:
            while chunk := f.read(READ_CHUNK):
                hasher.update(chunk)
        return Digest(digest.algorithm, hasher.hexdigest())

    def delete(self, digest: Digest) -> bool:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def sync_dirs(self) -> None:
        """Make every blob name in ``blobs/`` durable: done before a journal record may refer to
        them, whoever renamed them (a batch still publishing, another process)."""
        for path in self._algorithm_dirs():
            fsync_dir(path)

    def _algorithm_dirs(self) -> list[Path]:
        if not self.blobs_dir.is_dir():
            return []
        return [d for d in sorted(self.blobs_dir.iterdir()) if d.is_dir() and not d.is_symlink()]

    def names(self, algorithm: str) -> frozenset[str]:
        """The file names in ``blobs/<algorithm>`` (one directory read; stray names included)."""
        try:
            return frozenset(os.listdir(self.blobs_dir / algorithm))
        except FileNotFoundError:
            return frozenset()

    def iter_digests(self) -> Iterator[Digest]:
        """Every well-named blob file; stray names are skipped (fsck reports them)."""
        for alg_dir in self._algorithm_dirs():
            for entry in sorted(os.listdir(alg_dir)):
                try:
                    yield Digest.parse(f"{alg_dir.name}:{entry}")
                except GadgetStoreError:
                    continue

    def stray_entries(self) -> list[Path]:
        """Files under blobs/ whose names are not valid digests."""
        out: list[Path] = []
        for alg_dir in sorted(self.blobs_dir.iterdir()) if self.blobs_dir.is_dir() else []:
            if not alg_dir.is_dir() or alg_dir.is_symlink():
                out.append(alg_dir)
                continue
            for entry in sorted(os.listdir(alg_dir)):
                try:
                    Digest.parse(f"{alg_dir.name}:{entry}")
                except GadgetStoreError:
                    out.append(alg_dir / entry)
        return out

    def writer(self, expected: Digest | None = None, expected_size: int | None = None,
               direct: bool = False) -> IngestWriter:
        ensure_real_dir(self.ingest_dir, self.ingest_mode)  # a shared layout gets it with its first blob
        return IngestWriter(self, expected, expected_size, direct)

    def own_ingest_files(self) -> list[Path]:
        """The files in ``ingest/`` that gadgetstore writes (``ingest-…``); oras names its own
        ``<hex>_<n>``, and those belong to a running ig."""
        return [path for path in self.ingest_files() if path.name.startswith(INGEST_PREFIX)]

    def put(self, data: bytes, expected: Digest | None = None) -> Digest:
        """Store bytes (deduplicated); returns their digest."""
        digest = Digest.of_bytes(data, expected.algorithm if expected else "sha256")
        if expected is not None and digest != expected:
            raise DigestMismatch(f"content has digest {digest}, expected {expected}")
        if self.has(digest):
            return digest
        with self.writer(digest, len(data)) as w:
            w.write(data)
            w.commit()
        return digest

    def ingest_files(self) -> list[Path]:
        """Everything in ``ingest/``: unfinished writes (gc removes them while no writer holds a lease)."""
        try:
            return sorted(Path(entry.path) for entry in os.scandir(self.ingest_dir))
        except FileNotFoundError:
            return []


def verify_stream(chunks: Iterable[bytes], expected: Digest, expected_size: int | None) -> None:
    """Check bytes we do not need to keep (the blob is stored already) without holding them."""
    hasher, count = expected.hasher(), 0
    for chunk in chunks:
        hasher.update(chunk)
        count += len(chunk)
        if expected_size is not None and count > expected_size:
            raise IntegrityError(f"blob {expected}: more than the {expected_size} bytes declared")
    check_result(expected, expected_size, Digest(expected.algorithm, hasher.hexdigest()), count)


def _pwrite_all(fd: int, pieces: Sequence[bytes | memoryview], offset: int) -> None:
    """Write ``pieces`` back to back from ``offset``, in ``WRITE_SLICE`` calls, until every byte is
    down: a short write must not leave a hole behind bytes that were hashed from memory."""
    for piece in pieces:
        view = memoryview(piece)
        while view:
            written = os.pwrite(fd, view[:WRITE_SLICE], offset)
            if written <= 0:
                raise OSError(errno.EIO, "pwrite wrote nothing")
            view, offset = view[written:], offset + written


def _is_aligned(view: memoryview) -> bool:
    """Whether ``view`` starts on a page (read-only buffers cannot tell their address: no)."""
    if view.readonly or not view.contiguous or not view.nbytes:
        return False
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(view)) % DIRECT_ALIGN == 0


def _open_direct(path: Path, same_as: int) -> int | None:
    """A second descriptor on ``path`` that bypasses the page cache, or None where that is refused
    (or the name no longer leads to the file open as ``same_as``)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | flag)
    except OSError:
        return None
    ours, opened = os.fstat(same_as), os.fstat(fd)
    if (ours.st_dev, ours.st_ino) != (opened.st_dev, opened.st_ino):
        os.close(fd)
        return None
    return fd


def _update_all(hasher: hashlib._Hash, pieces: Sequence[bytes | memoryview]) -> None:
    for piece in pieces:
        hasher.update(piece)


def check_result(expected: Digest | None, expected_size: int | None, actual: Digest, size: int) -> None:
    if expected_size is not None and size != expected_size:
        raise IntegrityError(
            f"blob {expected or actual}: got {size} bytes, expected {expected_size}"
        )
    if expected is not None and actual != expected:
        raise DigestMismatch(f"blob {expected}: content has digest {actual}")


class IngestWriter:
    """Write one blob into ``ingest/``; :meth:`commit` verifies and publishes it atomically.

    Bytes are hashed as they are written whenever they extend the hashed prefix, so in-order writes
    are never read back; big ones are hashed in a helper thread while the next is written.
    :meth:`write_at`/:meth:`writev_at` (Range chunks arriving out of order) record the extents that
    land ahead; once the prefix reaches them they are hashed from the file (the page cache), and
    :meth:`seal` hashes whatever is still past the prefix. A write into the already-hashed prefix,
    or a failed write whose bytes were hashed, gives that up and :meth:`seal` re-hashes the whole
    file. Use :meth:`write` or the ``*_at`` methods on one writer, not both; the ``*_at`` methods
    may be called from several threads.

    ``direct=True`` (big downloads) writes page-aligned pieces that extend the hashed prefix with
    ``O_DIRECT``: the bytes go from the caller's buffer to the disk without being copied into the
    page cache and written back later, which costs a fraction of the CPU of buffered writes plus
    their fsync (benchmarks/RESULTS.md). Pieces that land ahead of the prefix stay in the page cache
    (they are read back for the hash), and so do unaligned pieces, read-only ``bytes`` (no address
    to check) and everything on a file system that refuses ``O_DIRECT``; :attr:`buffered_bytes`
    counts them, for a caller that starts writeback early.
    """

    def __init__(self, store: BlobStore, expected: Digest | None, expected_size: int | None,
                 direct: bool = False) -> None:
        self.store = store
        self.expected = expected
        self.expected_size = expected_size
        self._algorithm = expected.algorithm if expected else "sha256"
        self._hasher = hashlib.new(self._algorithm)
        self._hashed = 0  # bytes [0, _hashed) of the file went through _hasher
        self._ahead: dict[int, int] = {}  # start -> end of extents written past the prefix
        self._prefix_valid = True  # False once a write landed inside the hashed prefix
        self._lock = threading.Lock()
        self._hash_pool: ThreadPoolExecutor | None = None
        self._hashing: deque[Future[None]] = deque()  # queued hashes of written prefix batches
        self._count = 0
        prefix = f"{INGEST_PREFIX}{expected.algorithm}-{expected.hex}-" if expected else INGEST_PREFIX
        import tempfile

        fd, name = tempfile.mkstemp(prefix=prefix, dir=store.ingest_dir)
        self.temp_path = Path(name)
        # Unbuffered: the writes are large already, and a buffered file costs a terminal check and
        # a few seeks per blob, hundreds of times in a bulk pull.
        self._file: BinaryIO | None = os.fdopen(fd, "w+b", buffering=0)
        self._direct_fd = _open_direct(self.temp_path, fd) if direct else None
        self.buffered_bytes = 0  # bytes written through the page cache by the *_at methods and write_unhashed
        self.digest: Digest | None = None
        self.sealed = False

    def __enter__(self) -> IngestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    @property
    def hashed(self) -> int:
        """How many leading bytes are hashed already (what :meth:`seal` need not read back)."""
        with self._lock:
            self._drain()
            return self._hashed if self._prefix_valid else 0

    def _check_limit(self, end: int) -> None:
        if self.expected_size is not None and end > self.expected_size:
            raise IntegrityError(
                f"blob {self.expected}: more than the {self.expected_size} bytes declared"
            )

    def write(self, data: bytes | bytearray) -> None:
        assert self._file is not None, "writer is closed"
        with self._lock:
            self._check_limit(self._count + len(data))
            whole = view = memoryview(data)
            while view:  # unbuffered: a short write leaves the rest for the next call
                written = self._file.write(view[:WRITE_SLICE])
                if not written:
                    raise OSError(errno.EIO, "write wrote nothing")
                view = view[written:]
            self._account(self._count, [whole], len(data))

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        self.writev_at(offset, [data])

    def writev_at(self, offset: int, pieces: Sequence[bytes | memoryview]) -> Future[None] | None:
        """Write ``pieces`` back to back from ``offset``; pieces that extend the
        hashed prefix are hashed meanwhile in a helper thread (both release the GIL), so a batch
        costs the slower of the two instead of their sum.

        Returns the hash still running over ``pieces`` when this returns, else None: a caller that
        reuses the buffers behind ``pieces`` must wait for it (it ends, at the latest, inside a
        later write or :meth:`seal`)."""
        assert self._file is not None, "writer is closed"
        total = sum(len(piece) for piece in pieces)
        with self._lock:
            self._check_limit(offset + total)
            if self._prefix_valid and offset == self._hashed and total >= PARALLEL_HASH_MIN:
                return self._write_hashing(offset, pieces, total)
            self._pwrite(offset, pieces, direct=False)
            self._account(offset, pieces, total)
            return None

    def _write_hashing(self, offset: int, pieces: Sequence[bytes | memoryview], total: int) -> Future[None]:
        """Queue the hash of ``pieces`` on the helper thread, then write them: the next batch's
        write overlaps this one's hash. At most ``HASH_BACKLOG`` batches wait (bounded memory)."""
        assert self._file is not None
        if self._hash_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._hash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-hash")
        hashing = self._hash_pool.submit(_update_all, self._hasher, pieces)
        self._hashing.append(hashing)
        self._hashed = offset + total
        try:
            self._pwrite(offset, pieces, direct=True)
        except BaseException:
            self._prefix_valid = False  # the hash holds bytes the file may lack
            raise
        finally:
            self._count = max(self._count, offset + total)
            while len(self._hashing) > HASH_BACKLOG:
                self._hashing.popleft().result()
        self._catch_up()
        return hashing

    def write_unhashed(self, offset: int, data: memoryview) -> None:
        """Write ``data`` at ``offset`` for a caller that hashes it itself with :meth:`hash_next`, in
        offset order and from its own memory, so nothing is read back wherever the bytes land; aligned
        pieces go to disk with ``O_DIRECT``. One call at a time, and none while sealing or aborting;
        :meth:`hash_next` may run meanwhile in another thread."""
        assert self._file is not None, "writer is closed"
        with self._lock:
            self._check_limit(offset + len(data))
            self._count = max(self._count, offset + len(data))
        self._pwrite(offset, [data], direct=True)

    def hash_next(self, offset: int, data: memoryview) -> int:
        """Extend the running hash with ``data``, the bytes :meth:`write_unhashed` writes at
        ``offset`` (the end of the hashed prefix); returns the new end of the prefix, which may jump
        over extents the ``*_at`` methods wrote ahead (read back). One call at a time."""
        with self._lock:
            self._drain()
            if not self._prefix_valid:
                return self._hashed  # seal re-reads the whole file
            if offset != self._hashed:
                raise ValueError(f"hash_next at {offset}, the hashed prefix ends at {self._hashed}")
        self._hasher.update(data)  # outside the lock: a write going on meanwhile is not held up
        with self._lock:
            self._hashed = offset + len(data)
            self._catch_up()
            return self._hashed

    def hash_from_file(self, offset: int, end: int) -> int:
        """Like :meth:`hash_next` for bytes [offset, end) that :meth:`write_unhashed` wrote but whose
        buffer the caller no longer holds: they are read back from the file."""
        with self._lock:
            self._drain()
            if self._prefix_valid:
                if offset != self._hashed:
                    raise ValueError(f"hash_from_file at {offset}, the hashed prefix ends at {self._hashed}")
                self._hash_file(offset, end)
                self._catch_up()
            return self._hashed

    def restart_hash(self) -> None:
        """Forget the hashed prefix: the caller writes and hashes the whole blob again from offset 0."""
        with self._lock:
            self._drain()
            self._hasher, self._hashed, self._prefix_valid = hashlib.new(self._algorithm), 0, True
            self._ahead.clear()

    @property
    def direct(self) -> bool:
        """Whether aligned writes still bypass the page cache (nothing for a background sync to do)."""
        return self._direct_fd is not None

    def _pwrite(self, offset: int, pieces: Sequence[bytes | memoryview], direct: bool) -> None:
        """Write ``pieces`` from ``offset``; with ``direct``, the aligned part of each bypasses the
        page cache when it can, and the rest is written buffered."""
        assert self._file is not None
        for piece in pieces:
            view = memoryview(piece)
            if (direct and self._direct_fd is not None and offset % DIRECT_ALIGN == 0
                    and len(view) >= DIRECT_MIN and _is_aligned(view)):
                done = self._write_direct(view[:len(view) - len(view) % DIRECT_ALIGN], offset)
                view, offset = view[done:], offset + done
            _pwrite_all(self._file.fileno(), [view], offset)
            self.buffered_bytes += len(view)
            offset += len(view)

    def _write_direct(self, view: memoryview, offset: int) -> int:
        """Write aligned ``view`` with O_DIRECT; returns how much went down (the rest goes buffered).
        A refusal means this file system or device will not take it: stop trying for this file."""
        assert self._direct_fd is not None
        done = 0
        while done < len(view):
            try:
                written = os.pwrite(self._direct_fd, view[done:], offset + done)
            except OSError as err:
                if err.errno not in DIRECT_REFUSED:
                    raise
                self._close_direct()
                break
            if written <= 0 or written % DIRECT_ALIGN:
                done += max(0, written)
                break  # a short, unaligned write: the buffered path takes the rest
            done += written
        return done

    def _close_direct(self) -> None:
        """Called with ``_lock`` held, or from the one :meth:`write_unhashed` call: no write can be using
        the descriptor (or its reused number)."""
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None

    def _drain(self) -> None:
        """Wait for queued hashing: the hasher is up to ``_hashed`` afterwards."""
        while self._hashing:
            self._hashing.popleft().result()

    def _account(self, offset: int, pieces: Sequence[bytes | memoryview], total: int) -> None:
        """Extend the hash with ``pieces`` if they start at the prefix; else remember where they landed."""
        end = offset + total
        self._count = max(self._count, end)
        if not self._prefix_valid or not total:
            return
        if offset < self._hashed:
            self._prefix_valid = False  # bytes already hashed were overwritten: seal re-reads all
            self._ahead.clear()
        elif offset == self._hashed:
            self._drain()
            _update_all(self._hasher, pieces)
            self._hashed = end
            self._catch_up()
        elif self._ahead.get(offset, -1) < end:
            self._ahead[offset] = end

    def _catch_up(self) -> None:
        """Hash, from the file, extents that had landed ahead and now continue the prefix."""
        caught_up = False
        while (end := self._ahead.pop(self._hashed, None)) is not None:
            self._hash_file(self._hashed, end)
            caught_up = True
        if caught_up:  # drop extents the prefix swallowed (overlapping retries); seal reads any rest
            for start in [s for s, e in self._ahead.items() if s < self._hashed]:
                del self._ahead[start]

    def _hash_file(self, start: int, end: int) -> None:
        """Feed bytes [start, end) of the file (whatever is there now, holes read as zeros)."""
        assert self._file is not None and start == self._hashed
        self._drain()
        fd = self._file.fileno()
        while self._hashed < end:
            chunk = os.pread(fd, min(READ_CHUNK, end - self._hashed), self._hashed)
            if not chunk:
                break  # past the end of the file: seal's size check decides
            self._hasher.update(chunk)
            self._hashed += len(chunk)

    def seal(self, sync: bool = True) -> Digest:
        """Flush, fsync and verify; the file stays in ``ingest/`` until :meth:`publish`.

        ``sync=False`` leaves the fsync to the caller, who makes many sealed files durable at once
        (:class:`~.ingest.batched.BatchedPublisher`) before publishing any of them."""
        assert self._file is not None, "writer is closed"
        self._file.flush()
        crash_point("ingest.written")
        if sync:
            os.fsync(self._file.fileno())
            crash_point("ingest.synced")
        size = os.fstat(self._file.fileno()).st_size
        with self._lock:
            self._drain()
            if not self._prefix_valid:
                self._hasher, self._hashed, self._prefix_valid = hashlib.new(self._algorithm), 0, True
            self._hash_file(self._hashed, size)  # only what the prefix has not reached yet
            actual = Digest(self._algorithm, self._hasher.hexdigest())
            self._close_direct()
        self._stop_hash_pool()
        check_result(self.expected, self.expected_size, actual, size)
        os.fchmod(self._file.fileno(), 0o444)
        self._file.close()
        self._file = None
        self.digest = actual
        self.sealed = True
        return actual

    def publish(self, sync_dir: bool = True) -> bool:
        """Rename the sealed file into ``blobs/``; False when the blob was there already.

        ``sync_dir=False`` leaves the directory fsync to the caller, who publishes many blobs and
        syncs ``blobs/<alg>`` once before anything (a tag) refers to them.
        """
        assert self.sealed and self.digest is not None, "seal() first"
        target = self.store.path(self.digest)
        if self.store.has(self.digest):
            os.unlink(self.temp_path)
            self.sealed = False
            if sync_dir:  # another writer's rename may not be durable yet; make it so before we rely on it
                fsync_dir(target.parent)
            return False
        self.store.ensure_dir(target.parent)
        os.rename(self.temp_path, target)
        self.sealed = False
        crash_point("ingest.renamed")
        if sync_dir:
            fsync_dir(target.parent)
        crash_point("ingest.dirsynced")
        return True

    def commit(self) -> Digest:
        digest = self.seal()
        self.publish()
        return digest

    def _stop_hash_pool(self) -> None:
        if self._hash_pool is not None:
            self._hash_pool.shutdown()
            self._hash_pool = None

    def detach(self) -> None:
        """Close without deleting: the file stays in ``ingest/`` (a ranged download's partial, which a
        later pull resumes from; ``gc`` removes it otherwise)."""
        self._stop_hash_pool()
        with self._lock:
            self._close_direct()
        if self._file is not None:
            self._file.close()
            self._file = None

    def abort(self) -> None:
        self._stop_hash_pool()
        with self._lock:
            self._close_direct()
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):  # nothing is buffered; a failing close changes nothing here
                file.close()
        if self.sealed or self.digest is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp_path)
        self.sealed = False
