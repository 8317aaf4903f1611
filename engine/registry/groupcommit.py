"""Group commit: what arrives while one commit runs goes into the next one, together.

Many concurrent tasks each need one durable step (a tag in the journal, a blob made durable and
renamed into place) whose fixed cost (an fsync) dwarfs the per-item work. The first waiter takes
every pending item and commits them in one thread call; the others wait for that call and share
its outcome, so N items cost about as many commits as the disk can do while they arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("error", "finished", "item", "taken")

    def __init__(self, item: T) -> None:
        self.item = item
        self.taken = False  # in a batch: from now on the batch decides what happens to the item
        self.finished = trio.Event()
        self.error: BaseException | None = None


class GroupCommit(Generic[T]):
    """Commit items in batches with ``commit`` (run in a worker thread, one batch at a time)."""

    def __init__(self, commit: Callable[[list[T]], None]) -> None:
        self._commit = commit
        self._pending: list[_Entry[T]] = []
        self.lock = trio.Lock()  # held while a batch commits; others may hold it to keep batches out

    async def submit(self, item: T) -> None:
        """Return once ``item`` is committed, alone or with others; raise what its batch raised.

        Cancelled before a batch took it, the item is withdrawn and stays the caller's. Once taken,
        the item belongs to its batch: a cancelled caller still waits (shielded) for that batch to
        end, so it never cleans up an item the batch is still working on.
        """
        entry = _Entry(item)
        self._pending.append(entry)
        try:
            async with self.lock:
                if not entry.taken:
                    await self._run_batch()
        except BaseException:
            if not entry.taken:
                self._pending.remove(entry)
            else:
                with trio.CancelScope(shield=True):
                    await entry.finished.wait()
            raise
        if entry.error is not None:
            raise entry.error

    async def _run_batch(self) -> None:
        batch, self._pending = self._pending, []
        for entry in batch:
            entry.taken = True
        try:
            await trio.to_thread.run_sync(self._commit, [entry.item for entry in batch])
        except BaseException as err:
            for entry in batch:
                entry.error = err
        finally:
            for entry in batch:
                entry.finished.set()
