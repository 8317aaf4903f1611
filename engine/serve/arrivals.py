"""Waiting for blobs that a pull on this node is still fetching, for peers that asked for them.

Many peers may wait at once, so one task polls the store for every awaited digest together (one
worker-thread call per tick), rather than each request polling on its own.
"""

from __future__ import annotations

import trio

from gadgetstore.engine.blobstore import BlobStore
from gadgetstore.engine.digest import Digest

POLL_INTERVAL = 0.02


class Arrivals:
    """``size(digest, wait)``: a blob's size once it is in the store, or None after ``wait`` seconds."""

    def __init__(self, blobs: BlobStore, interval: float = POLL_INTERVAL) -> None:
        self.blobs = blobs
        self.interval = interval
        self._waiting: dict[Digest, tuple[trio.Event, int]] = {}
        self._wakeup = trio.Event()

    def _size(self, digest: Digest) -> int | None:
        st = self.blobs.stat(digest)
        return st.st_size if st is not None else None

    async def size(self, digest: Digest, wait: float) -> int | None:
        size = await trio.to_thread.run_sync(self._size, digest)
        if size is not None or wait <= 0:
            return size
        event, count = self._waiting.get(digest, (trio.Event(), 0))
        self._waiting[digest] = (event, count + 1)
        self._wakeup.set()
        try:
            with trio.move_on_after(wait):
                await event.wait()
        finally:
            event, count = self._waiting.get(digest, (event, 1))
            if count <= 1:
                self._waiting.pop(digest, None)
            else:
                self._waiting[digest] = (event, count - 1)
        return await trio.to_thread.run_sync(self._size, digest)

    def _present(self, digests: list[Digest]) -> list[Digest]:
        return [d for d in digests if self.blobs.stat(d) is not None]

    async def run(self) -> None:
        """Poll while anyone waits; sleep until someone does."""
        while True:
            if not self._waiting:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            await trio.sleep(self.interval)
            for digest in await trio.to_thread.run_sync(self._present, list(self._waiting)):
                entry = self._waiting.get(digest)
                if entry is not None:
                    entry[0].set()
