"""Changing the tags of a store: transactions, and the interface both kinds of store keep.

A store's tags and pins are kept by one of two :class:`TagIndex` implementations, chosen when the
store is opened (:func:`.store.store_kind`):

- :class:`.journalindex.JournalIndex`, gadgetstore's own store: the index journal is the truth and
  index.json follows it;
- :class:`.layoutindex.LayoutIndex`, a layout shared with ig: index.json is the truth, changed by
  ig's lock protocol.

A change is a :class:`Transaction`: operations (:mod:`.journal_format`) collected under the index
lock against the current state, then recorded as one change: one journal record, or one rewrite of
index.json. An error before that means nothing changed. Inside a deferred block (a bulk pull)
index.json is written once, when the outermost block ends.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from . import journal_format as jf
from .descriptor import Descriptor
from .digest import Digest


class Transaction:
    """Operations collected under the index lock, applied as one change; ``state`` is what they
    apply to (read it to decide what to change)."""

    def __init__(self, state: jf.IndexState) -> None:
        self.state = state
        self.ops: list[jf.Op] = []

    def tag(self, ref: str, desc: Descriptor) -> None:
        self.ops.append(jf.Tag(ref, desc.to_json()))

    def untag(self, ref: str) -> None:
        self.ops.append(jf.Untag(ref))

    def pin(self, desc: Descriptor) -> None:
        self.ops.append(jf.Pin(desc.to_json()))

    def unpin(self, digest: Digest) -> None:
        self.ops.append(jf.Unpin(str(digest)))


class TagIndex(Protocol):
    """The tags and pins of one store, and how they change (see the module docstring)."""

    @property
    def state(self) -> jf.IndexState:
        """Tags (reference → descriptor JSON) and pins (digest → descriptor JSON), as last read."""

    def open(self, readonly: bool, allow_damage: bool) -> None:
        """Read the tags when the store is opened (and, unless ``readonly``, bring index.json up)."""

    def refresh(self) -> None:
        """Read again what other processes changed."""

    def generation(self) -> int:
        """:meth:`refresh`, then a number that changes whenever the tags or pins did; a stat or
        two when nothing changed, so readers (the mount, serve) poll it to know when to reload."""

    def settled(self) -> contextlib.AbstractContextManager[None]:
        """The index lock held exclusively and the state current: a view nobody changes meanwhile."""

    def transaction(self, done: str = "the change was recorded") -> contextlib.AbstractContextManager[Transaction]:
        """Collect operations and record them as one change; ``done`` says what happened when the
        change stands but index.json could not follow it (:class:`~.errors.IndexJsonBehind`)."""

    def deferred(self) -> contextlib.AbstractContextManager[None]:
        """Transactions inside write index.json once, when the outermost block ends."""

    def flush(self) -> None:
        """Write what a deferred block kept in memory so far (a shared layout keeps its changes there)."""

    def discard_pending(self) -> None:
        """Forget what a deferred block kept in memory, after its flush failed for good."""

    def record_repair(self, ops: list[jf.Op]) -> None:
        """``fsck --repair``: record these removals and rewrite index.json; the caller holds the lock."""

    def compact(self) -> None:
        """Rewrite the journal as one snapshot (nothing to do without a journal)."""

    def after_collection(self, done: str) -> None:
        """After gc deleted blobs (``done`` says so when index.json cannot follow)."""
