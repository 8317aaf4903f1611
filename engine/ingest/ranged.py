"""The ingest file of one big blob fetched in Range chunks, resumable after a kill.

The file is written with ``O_DIRECT`` where it can be, holds an ``flock`` while it is live and a
``.ranged`` marker beside it, so that a later download of the same blob adopts the bytes it holds
(:mod:`.resume`) instead of fetching them again. It is made durable on its own (an fsync of the
file, then of its directory): a blob this big gains nothing from sharing a batch's ``syncfs``.
"""

from __future__ import annotations

import os

from ..blobstore import BlobStore, IngestWriter
from ..descriptor import Descriptor
from . import resume


class RangedIngest:
    """One ranged download's ingest file: :meth:`adopt_partial`, write through :attr:`writer`,
    :meth:`commit`, and always :meth:`close`. Blocking (run it in a worker thread)."""

    def __init__(self, blobs: BlobStore, desc: Descriptor) -> None:
        self._blobs = blobs
        self._desc = desc
        self.writer: IngestWriter = blobs.writer(desc.digest, desc.size, True)
        try:
            self.lock_fd = resume.lock_writer(self.writer)  # also the fd an early writeback syncs
        except BaseException:
            self.writer.abort()
            raise
        self._partial: resume.Partial | None = None

    def adopt_partial(self, chunks: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Mark this file as resumable and take in what a killed download of the blob left; returns
        the (start, end) ranges of ``chunks`` still to fetch."""
        resume.mark_ranged(self.writer)
        self._partial = resume.find_partial(self._blobs, self._desc)
        if self._partial is None:
            return chunks
        return resume.adopt(self._partial, self.writer, chunks)

    def commit(self) -> None:
        """Verify, fsync, rename into ``blobs/`` and fsync the directory."""
        self.writer.commit()

    def close(self, keep: bool) -> None:
        """Drop the download's files and lock; with ``keep`` (an interrupted download, not wrong
        bytes), its partial file stays, marked, for the next download to resume from."""
        if self._partial is not None:
            resume.release(self._partial, adopted=True)
        if keep and not self.writer.sealed and os.path.getsize(self.writer.temp_path) > 0:
            self.writer.detach()
        else:
            resume.unmark_ranged(self.writer)
            self.writer.abort()
        os.close(self.lock_fd)
