"""Group commit: what arrives while one commit runs goes into the next one, together.

Many concurrent tasks each need one durable step (a tag in the journal, a blob made durable and
renamed into place) whose fixed cost (an fsync) dwarfs the per-item work. The first waiter takes
every pending item and commits them in one thread call; the others wait for that call and share
its outcome, so N items cost about as many commits as the disk can do while they arrive.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import trio

from ..errors import StoreError

T = TypeVar("T")
# What a commit returns: None when every item is in, else one outcome per item (None: committed).
Outcomes = Sequence[Exception | None] | None


def _own_copy(err: Exception) -> Exception:
    """The same error for one more waiter, with a traceback of its own (one object raised in many
    tasks would collect all of their tracebacks)."""
    try:
        return copy.copy(err)
    except Exception:
        return err


class _Entry(Generic[T]):
    __slots__ = ("error", "finished", "item", "taken")

    def __init__(self, item: T) -> None:
        self.item = item
        self.taken = False  # in a batch: from now on the batch decides what happens to the item
        self.finished = trio.Event()
        self.error: Exception | None = None


class GroupCommit(Generic[T]):
    """Commit items in batches with ``commit`` (run in a worker thread, one batch at a time).

    ``commit`` raises when the whole batch failed, or returns one outcome per item when only some
    did (see :data:`Outcomes`)."""

    def __init__(self, commit: Callable[[list[T]], Outcomes]) -> None:
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
            raise _own_copy(entry.error) from entry.error

    async def _run_batch(self) -> None:
        batch, self._pending = self._pending, []
        for entry in batch:
            entry.taken = True
        try:
            # Once its items are taken the batch runs to its end: a cancelled leader must neither
            # leave them half-committed nor hand its Cancelled to the other waiters.
            with trio.CancelScope(shield=True):
                outcomes = await trio.to_thread.run_sync(self._commit, [entry.item for entry in batch])
            for entry, outcome in zip(batch, outcomes or [None] * len(batch), strict=True):
                entry.error = outcome
        except Exception as err:
            for entry in batch:
                entry.error = err
        except BaseException:
            for entry in batch:
                entry.error = StoreError("interrupted while committing")
            raise
        finally:
            for entry in batch:
                entry.finished.set()
