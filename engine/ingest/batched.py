"""Blobs made durable together: one ``syncfs`` instead of two fsyncs per blob.

A pull of many gadget images brings hundreds of small blobs and manifests; an fsync of each file
before its rename and one of ``blobs/<alg>`` after it would cost two system calls and two thread
hand-offs per blob (figures: ``benchmarks/RESULTS.md``). Here the blobs that arrive while one batch runs are
taken by the next, in one worker-thread call: each is written and verified without an fsync
(:meth:`IngestWriter.seal` with ``sync=False``), then one ``syncfs`` of the store's file system
(or, where there is no ``syncfs``, an fsync of each file), then the renames, then one fsync per
blob directory. One thread hand-off per batch rather than two per blob, because on few cores the
hand-offs and their wake-ups weigh more than the writes. The order per blob is the one
:meth:`IngestWriter.commit` keeps (bytes durable before the name appears, the name durable before
anything refers to it), and an image is tagged only after all of its blobs are published.
Big ranged blobs keep their own path (``O_DIRECT`` and an fsync of their own: :mod:`.ranged`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trio

from ..blobstore import BlobStore, IngestWriter
from ..digest import Digest
from ..fsutil import fsync_dir, fsync_path, sync_filesystem
from .groupcommit import GroupCommit


@dataclass
class _Item:
    """Bytes to stage and publish (``data``), or a sealed writer to publish."""

    data: bytes | bytearray | None = None
    digest: Digest | None = None
    writer: IngestWriter | None = None


class BatchedPublisher:
    """Publish blobs of one store in group commits."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._group: GroupCommit[_Item] = GroupCommit(self._publish_batch)

    async def publish(self, writer: IngestWriter) -> None:
        """Make ``writer``'s sealed file durable and visible; on failure it is aborted (removed)."""
        try:
            await self._group.submit(_Item(writer=writer))
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(writer.abort)
            raise

    async def put(self, data: bytes | bytearray, digest: Digest) -> None:
        """:meth:`BlobStore.put` in the next batch: written, verified and published (nothing is left
        behind when its bytes are wrong or the batch fails)."""
        await self._group.submit(_Item(data, digest))

    def _stage(self, data: bytes | bytearray, digest: Digest) -> IngestWriter | None:
        """Write and verify ``data`` (no fsync); None when the store has the blob already."""
        if self.blobs.has(digest):
            return None
        writer = self.blobs.writer(digest, len(data))
        try:
            writer.write(data)
            writer.seal(sync=False)
        except BaseException:
            writer.abort()
            raise
        return writer

    def _publish_batch(self, items: list[_Item]) -> list[Exception | None]:
        """Stage the bytes, sync, rename. A blob whose bytes are wrong fails alone; a failed sync
        fails the batch (nothing was renamed); a failed rename fails only its blob, and the names
        already in place are made durable all the same. Writers staged here are removed on failure."""
        outcomes: list[Exception | None] = [None] * len(items)
        staged: list[IngestWriter] = []  # ours to remove if they are not published
        ready: list[tuple[int, IngestWriter]] = []
        try:
            for i, item in enumerate(items):
                writer = item.writer
                if writer is None:
                    assert item.data is not None and item.digest is not None
                    try:
                        writer = self._stage(item.data, item.digest)
                    except Exception as err:
                        outcomes[i] = err
                        continue
                    if writer is None:
                        continue  # in the store already
                    staged.append(writer)
                ready.append((i, writer))
            if ready:
                self._sync([writer for _, writer in ready])
            dirs: set[Path] = set()
            try:
                for i, writer in ready:
                    assert writer.digest is not None
                    try:
                        writer.publish(sync_dir=False)  # also when the blob was there: its name gets synced too
                    except Exception as err:
                        outcomes[i] = err
                        continue
                    dirs.add(self.blobs.path(writer.digest).parent)
            finally:
                for path in sorted(dirs):
                    fsync_dir(path)
        finally:
            for writer in staged:
                writer.abort()  # removes the file of one not published; nothing for one that was
        return outcomes

    def _sync(self, writers: list[IngestWriter]) -> None:
        if not sync_filesystem(self.blobs.ingest_dir):
            for writer in writers:
                fsync_path(writer.temp_path)
