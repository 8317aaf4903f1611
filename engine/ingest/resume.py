"""Resuming a killed ranged download from the partial file it left in ``ingest/``.

A ranged download writes chunks at their offsets, so its ingest file is sparse: the data extents
the file system reports (``SEEK_DATA``/``SEEK_HOLE``) are the bytes that arrived. Extents are
trimmed back to a block boundary (the last block may be partly written) and their bytes copied
into the new writer, in order, so the writer hashes them as they are copied; only the rest is
fetched. Nothing here is trusted: the digest at commit covers adopted and fetched bytes alike,
and a mismatch makes the caller start over.

Every ranged writer keeps an ``flock`` on its file and a ``.ranged`` marker beside it. Only marked
files are candidates (an import's sealed file or another writer's file is never touched), a locked
one is live and skipped, and an adopted one is deleted once its bytes are in the new writer.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from ..blobstore import INGEST_PREFIX, BlobStore, IngestWriter
from ..descriptor import Descriptor

BLOCK = 4096
COPY_SIZE = 1024 * 1024


@dataclass
class Partial:
    path: Path
    fd: int  # open and flocked by us until :func:`release`
    extents: list[tuple[int, int]]

    @property
    def bytes(self) -> int:
        return sum(end - start for start, end in self.extents)


def lock_writer(writer: IngestWriter) -> int:
    """Mark ``writer``'s file as live for other processes; close the returned fd to release."""
    fd = os.open(writer.temp_path, os.O_RDONLY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def data_extents(fd: int, size: int, trim_partial_blocks: bool = True) -> list[tuple[int, int]]:
    """(start, end) of the data the file holds; trimmed, the possibly half-written last block of each
    extent inside the file is dropped."""
    extents: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:
                break
            raise
        end = min(size, os.lseek(fd, start, os.SEEK_HOLE))
        # The block an extent ends in may be only partly written: keep it only at end of file.
        trimmed = end if end == size or not trim_partial_blocks else end - BLOCK
        if trimmed > start:
            extents.append((start, trimmed))
        pos = max(end, start + 1)
    return extents


def find_partial(blobs: BlobStore, desc: Descriptor) -> Partial | None:
    """The partial ingest file of ``desc`` with the most data that no live writer holds."""
    prefix = f"{INGEST_PREFIX}{desc.digest.algorithm}-{desc.digest.hex}-"
    best: Partial | None = None
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(blobs.ingest_dir):
            if not entry.name.startswith(prefix) or entry.name.endswith(".ranged"):
                continue
            if not _was_ranged(entry):
                continue  # another kind of writer (an import's sealed file, a whole-blob fetch): not ours
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                st = os.fstat(fd)
                if st.st_size > desc.size:
                    raise BlockingIOError
                found = Partial(Path(entry.path), fd, data_extents(fd, st.st_size))
            except OSError:
                os.close(fd)
                continue
            if best is None or found.bytes > best.bytes:
                if best is not None:
                    os.close(best.fd)
                best = found
            else:
                os.close(found.fd)
    if best is not None and best.bytes == 0:
        os.close(best.fd)
        return None
    return best


def _was_ranged(entry: os.DirEntry[str]) -> bool:
    """Ranged writers leave a ``.ranged`` marker beside their file: such a file is ours once unlocked."""
    return os.path.exists(entry.path + ".ranged")


def mark_ranged(writer: IngestWriter) -> None:
    Path(str(writer.temp_path) + ".ranged").touch()


def unmark_ranged(writer: IngestWriter) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(str(writer.temp_path) + ".ranged")


def adopt(partial: Partial, writer: IngestWriter, chunks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Copy each chunk's already-present prefix into ``writer``; returns the (start, end) left to fetch."""
    todo: list[tuple[int, int]] = []
    for start, end in chunks:
        have = start
        for ext_start, ext_end in partial.extents:
            if ext_start <= have < ext_end:
                have = min(end, ext_end)
        pos = start
        while pos < have:
            n = min(COPY_SIZE, have - pos)
            writer.write_at(pos, os.pread(partial.fd, n, pos))
            pos += n
        if have < end:
            todo.append((have, end))
    return todo


def release(partial: Partial, adopted: bool) -> None:
    """Drop our lock; remove the old file (and its marker) once its bytes are safely elsewhere."""
    if adopted:
        for path in (partial.path, Path(str(partial.path) + ".ranged")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    os.close(partial.fd)
