"""Images tagged in group commits: what becomes ready while one journal record is appended goes
into the next record, together.

A bulk pull finishes many images at about the same time, and each tag would otherwise cost a
journal append and its fsync. An image is handed here only once all of its blobs are durable, so
a tag never names a blob that a crash could lose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..descriptor import Descriptor
from .groupcommit import GroupCommit

if TYPE_CHECKING:
    from ..store import Store


class ImageTags:
    """Tag (or, without a tag, pin) images of one store through its transactions, in batches."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._group: GroupCommit[tuple[str | None, Descriptor]] = GroupCommit(self._commit)

    @property
    def lock(self) -> trio.Lock:
        """Held while a batch is recorded: the store's in-memory journal state is not safe to read
        in one thread while another thread appends to it."""
        return self._group.lock

    async def record(self, tag: str | None, desc: Descriptor) -> None:
        """Return once ``tag`` names ``desc`` (with tag None: ``desc`` is pinned), durably."""
        await self._group.submit((tag, desc))

    def _commit(self, batch: list[tuple[str | None, Descriptor]]) -> None:
        """One journal record for the batch (all or nothing); no tag means an untagged image."""
        with self._store.transaction("the pulled images were tagged") as txn:
            for ref, desc in batch:
                wanted = desc.bare()
                if ref is None:
                    if txn.state.pins.get(str(wanted.digest)) != wanted.to_json():
                        txn.pin(wanted)
                elif txn.state.tags.get(ref) != wanted.to_json():  # a warm re-pull appends no record
                    txn.tag(ref, wanted)
