"""Waiting for blobs that a pull on this node is still fetching, for peers that asked for them.

Many peers may wait at once, so one task polls the store for every awaited digest together (one
worker-thread call per tick), rather than each request polling on its own. At most ``max_waiting``
requests wait at once (each holds a request slot); beyond that, requests are answered at once.
"""

from __future__ import annotations

import logging

import trio

from gadgetstore.engine.blobstore import BlobStore
from gadgetstore.engine.digest import Digest

log = logging.getLogger("gadgetstore.serve")

POLL_INTERVAL = 0.02


class Arrivals:
    """``size(digest, wait)``: a blob's size once it is in the store, or None after ``wait`` seconds."""

    def __init__(self, blobs: BlobStore, interval: float = POLL_INTERVAL, max_waiting: int = 64) -> None:
        self.blobs = blobs
        self.interval = interval
        self.max_waiting = max_waiting
        self._waiting: dict[Digest, tuple[trio.Event, int]] = {}
        self._waiters = 0
        self._wakeup = trio.Event()

    @property
    def waiting(self) -> int:
        """Requests waiting for a blob right now."""
        return self._waiters

    def _size(self, digest: Digest) -> int | None:
        st = self.blobs.stat(digest)
        return st.st_size if st is not None else None

    async def size(self, digest: Digest, wait: float) -> int | None:
        size = await trio.to_thread.run_sync(self._size, digest)
        if size is not None or wait <= 0 or self._waiters >= self.max_waiting:
            return size
        event, count = self._waiting.get(digest, (trio.Event(), 0))
        self._waiting[digest] = (event, count + 1)
        self._waiters += 1
        self._wakeup.set()
        try:
            with trio.move_on_after(wait):
                await event.wait()
        finally:
            self._waiters -= 1
            event, count = self._waiting.get(digest, (event, 1))
            if count <= 1:
                self._waiting.pop(digest, None)
            else:
                self._waiting[digest] = (event, count - 1)
        return await trio.to_thread.run_sync(self._size, digest)

    def _present(self, digests: list[Digest]) -> tuple[list[Digest], OSError | None]:
        """The digests now in the store, and the last error of a stat that failed (treated as absent)."""
        present: list[Digest] = []
        failed: OSError | None = None
        for digest in digests:
            try:
                if self.blobs.stat(digest) is not None:
                    present.append(digest)
            except OSError as err:  # EACCES, EIO: not taken as arrived; its waiters time out
                failed = err
        return present, failed

    async def run(self) -> None:
        """Poll while anyone waits; sleep until someone does. A failing stat is logged, not fatal."""
        failing = False
        while True:
            if not self._waiting:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            await trio.sleep(self.interval)
            present, failed = await trio.to_thread.run_sync(self._present, list(self._waiting))
            if failed is not None and not failing:  # once per run of failures, not every tick
                log.warning("cannot check the store for awaited blobs: %s", failed)
            failing = failed is not None
            for digest in present:
                entry = self._waiting.get(digest)
                if entry is not None:
                    entry[0].set()
