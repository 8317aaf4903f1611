"""Small blobs of a pull made durable together: one ``syncfs`` instead of two fsyncs per blob.

A pull of many gadget images brings hundreds of small blobs and manifests. Each used to cost an
fsync of its file before the rename and one of ``blobs/<alg>`` after it; on the machines measured
that was about a quarter of the pull's CPU. Here each blob is written and verified without an
fsync (:meth:`IngestWriter.seal` with ``sync=False``), and the blobs that are ready while one batch
runs are published by the next: one ``syncfs`` of the store's file system (or, where there is no
``syncfs``, an fsync of each file), then the renames, then one fsync per blob directory. The order
per blob is the one :meth:`IngestWriter.commit` keeps (bytes durable before the name appears, the
name durable before anything refers to it), and the pull tags an image only after all of its blobs
are published. Big ranged blobs keep their own path (``O_DIRECT`` and an fsync of their own).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..blobstore import IngestWriter
from ..digest import Digest
from ..fsutil import fsync_dir, fsync_path, sync_filesystem
from .groupcommit import GroupCommit

if TYPE_CHECKING:
    from ..store import Store


class BlobPublisher:
    """Publish sealed, not yet durable writers of one store in group commits."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._group: GroupCommit[IngestWriter] = GroupCommit(self._publish_batch)

    async def publish(self, writer: IngestWriter) -> None:
        """Make ``writer``'s sealed file durable and visible; on failure it is aborted (removed)."""
        try:
            await self._group.submit(writer)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(writer.abort)
            raise

    async def put(self, data: bytes, digest: Digest) -> None:
        """:meth:`BlobStore.put` for the pull: verified in a worker thread, published in a batch."""
        writer = await trio.to_thread.run_sync(self._stage, data, digest)
        if writer is not None:
            await self.publish(writer)

    def _stage(self, data: bytes, digest: Digest) -> IngestWriter | None:
        """Write and verify ``data`` (no fsync); None when the store has the blob already."""
        if self.store.blobs.has(digest):
            return None
        writer = self.store.blobs.writer(digest, len(data))
        try:
            writer.write(data)
            writer.seal(sync=False)
        except BaseException:
            writer.abort()
            raise
        return writer

    def _publish_batch(self, writers: list[IngestWriter]) -> list[Exception | None]:
        """A failed sync fails the batch (nothing was renamed); a failed rename fails only its blob,
        and the names already in place are made durable all the same."""
        if not sync_filesystem(self.store.blobs.ingest_dir):
            for writer in writers:
                fsync_path(writer.temp_path)
        outcomes: list[Exception | None] = []
        dirs: set[Path] = set()
        try:
            for writer in writers:
                assert writer.digest is not None
                try:
                    writer.publish(sync_dir=False)  # also when the blob was there: its name gets synced too
                except Exception as err:
                    outcomes.append(err)
                    continue
                dirs.add(self.store.blobs.path(writer.digest).parent)
                outcomes.append(None)
        finally:
            for path in sorted(dirs):
                fsync_dir(path)
        return outcomes

