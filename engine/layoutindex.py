"""The tags of an OCI layout another tool owns (ig's ``/var/lib/ig/oci-store``): index.json is the truth.

ig keeps no journal: it rewrites index.json in place under ``index.json.lock``, and writes blobs
before naming them there. Here the same protocol is followed:

- a reader takes the lock shared while it reads index.json when it may open the lock file, else
  reads without it and reads again what changed meanwhile (:func:`.indexjson.load_index`); it
  writes nothing, ever. A refresh reads index.json again only when its stat changed, or when it
  was read too soon after its last change to tell a later rewrite apart (:func:`_settled`);
- a change takes the lock exclusively, reads index.json again, checks that every blob the new
  entries reach is there (ig's ``image remove`` deletes every blob index.json does not reach, so a
  blob fetched a moment ago may be gone), and replaces index.json with the edit of
  :meth:`.indexjson.IndexDocument.edited`: the entries ig's own command would add, every other
  entry byte for byte;
- inside a deferred block (a bulk pull) changes are kept in memory, visible to this process, and
  written once when the block ends (each write of index.json makes a concurrent ig command start
  over, and ig gives up after 20 of them).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import journal_format as jf
from .descriptor import Descriptor
from .digest import Digest
from .errors import StoreError
from .indexjson import IndexDocument, StatKey, load_index, stat_key, write_index
from .locking import StoreLocks
from .tagindex import Transaction


class BlobsMissing(StoreError):
    """Blobs an index change would name are not in the store (nothing was written)."""

    def __init__(self, missing: list[Descriptor]) -> None:
        self.missing = missing
        shown = ", ".join(str(desc.digest) for desc in missing[:3]) + (" …" if len(missing) > 3 else "")
        super().__init__(f"{len(missing)} blob(s) vanished before they could be indexed ({shown}; another "
                         "tool's gc may have deleted them); nothing was tagged: pull or import again")


@dataclass
class IndexPlan:
    """What indexing some roots needs: the blobs that are missing, and the manifests and indexes
    below each root (by root digest, breadth first, as their parents list them)."""

    missing: list[Descriptor] = field(default_factory=list)
    below: dict[Digest, list[Descriptor]] = field(default_factory=dict)


Planner = Callable[[list[Descriptor]], IndexPlan]

SETTLED_NS = 2_000_000_000
"""How long after its last change a file's stat identifies its content: ig rewrites index.json in
place, and a rewrite of the same size within the file system's timestamp granularity (a clock
tick; seconds on some network file systems) leaves the stat as it was."""


def _settled(key: StatKey) -> bool:
    """The content read at ``key`` stays identified by it: it was read long enough after the
    file's last change (mtime, ctime) that any rewrite since would have changed them."""
    _, mtime_ns, ctime_ns, _ = key
    return time.time_ns() - max(mtime_ns, ctime_ns) >= SETTLED_NS


class LayoutIndex:
    """index.json of one shared layout, read and changed by ig's rules (see the module docstring); a
    :class:`~.tagindex.TagIndex`.

    ``plan`` walks the graphs of roots about to be indexed (the store's blobs); it runs under the
    index lock, so that what it finds is still true when index.json names it. ``sync_blobs`` makes
    every blob name durable, before index.json may name them (writers that publish many blobs
    leave that directory fsync to the change).
    """

    def __init__(self, root: Path, locks: StoreLocks, plan: Planner, sync_blobs: Callable[[], None]) -> None:
        self.index_path = root / "index.json"
        self.locks = locks
        self._plan = plan
        self._sync_blobs = sync_blobs
        self._data: bytes | None = None
        self._document = IndexDocument.empty()
        self._state = jf.IndexState()
        self._pending: list[jf.Op] = []
        self._lock = threading.RLock()  # the state and pending changes, between worker threads
        self._deferrals = 0
        self._holder: int | None = None  # the thread holding the exclusive index lock, if one of ours does
        self._read_at: StatKey | None = None  # index.json's stat when last read, while it identifies it
        self._generations = itertools.count(1)
        self._generation = 0

    @property
    def state(self) -> jf.IndexState:
        return self._state

    def generation(self) -> int:
        """:meth:`refresh`, then a number that changes whenever the state does (a stat of
        index.json when it did not change)."""
        self.refresh()
        return self._generation

    def _changed(self) -> None:
        """The state changed (under ``self._lock``)."""
        self._generation = next(self._generations)

    def open(self, readonly: bool = True, allow_damage: bool = False) -> None:
        """Read index.json; opening writes nothing, for reading or writing (ig's store stays ig's)."""
        self.refresh()

    def refresh(self) -> None:
        if self._holder == threading.get_ident():
            self._load(locked=True)  # a second flock of ours would wait for the first for ever
            return
        if self._read_at is not None and stat_key(self.index_path) == self._read_at:
            return
        with self.locks.shared() as held:
            self._load(locked=held)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self.locks.exclusive():
            self._holder = threading.get_ident()
            try:
                yield
            finally:
                self._holder = None

    def _load(self, locked: bool) -> None:
        document, key = load_index(self.index_path, locked)
        data = document.render()  # the entries' own bytes: what a change of them changes
        with self._lock:
            self._read_at = key if key is not None and _settled(key) else None
            if data == self._data:
                return
            self._data, self._document = data, document
            self._state = document.state()
            self._state.apply(self._pending)
            self._changed()

    @contextlib.contextmanager
    def settled(self) -> Iterator[None]:
        """The index lock held exclusively and the state current: a stable view (ig waits)."""
        with self._exclusive():
            self._load(locked=True)
            yield

    @contextlib.contextmanager
    def transaction(self, done: str = "") -> Iterator[Transaction]:
        """Collect tag/pin operations and write them to index.json as one change.

        Inside a deferred block they are only kept, and written when it ends. Anything raised
        before index.json is replaced means nothing changed; ``done`` is not needed here, since
        there is no journal that could be ahead of index.json.
        """
        with self._lock:
            if self._deferrals:
                txn = Transaction(self._state)
                yield txn
                self._pending.extend(txn.ops)
                self._state.apply(txn.ops)
                if txn.ops:
                    self._changed()
                return
        with self._exclusive():
            self._load(locked=True)
            with self._lock:
                txn = Transaction(self._state)
                yield txn
                if txn.ops:
                    self._publish(txn.ops)

    def _publish(self, ops: list[jf.Op]) -> None:
        """Under the exclusive index lock: check the blobs, then replace index.json."""
        final = self._document.state()
        final.apply(ops)
        roots = [Descriptor.from_json(op.desc, "index entry") for op in ops
                 if (isinstance(op, jf.Tag) and final.tags.get(op.ref) == op.desc)
                 or (isinstance(op, jf.Pin) and final.pins.get(op.digest) == op.desc)]
        plan = self._plan(roots)
        if plan.missing:
            raise BlobsMissing(plan.missing)
        if roots:
            self._sync_blobs()
        self._replace(self._document.edited(ops, lambda desc: plan.below.get(desc.digest, [])))

    def _replace(self, edited: IndexDocument) -> None:
        """Write ``edited`` (under the exclusive lock), unless it is what the file holds, and take
        it as what was read: nobody else writes index.json while the lock is held."""
        data = edited.render()
        if data != self._data:
            write_index(self.index_path, edited)
        document = edited.frozen()
        with self._lock:
            self._read_at = None  # read it again at the next refresh, to learn its stat
            if data != self._data:
                self._changed()
            self._data, self._document = data, document
            self._state = document.state()
            self._state.apply(self._pending)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Transactions inside are written to index.json once, when the outermost block ends (or at
        :meth:`flush`). A failure then raises: nothing of the block was recorded."""
        with self._lock:
            self._deferrals += 1
        try:
            yield
        finally:
            with self._lock:
                self._deferrals -= 1
                last = self._deferrals == 0
            if last:
                self.flush()

    def flush(self) -> None:
        """Write the changes kept so far; raises :class:`BlobsMissing` (keeping them, so that the
        caller can fetch what vanished and flush again)."""
        with self._lock:
            if not self._pending:
                return
        with self._exclusive():
            with self._lock:
                pending = list(self._pending)
                self._pending.clear()
            try:
                self._load(locked=True)
                self._publish(pending)
            except BaseException:
                with self._lock:
                    self._pending[:0] = pending
                    self._state.apply(pending)
                    self._changed()
                raise

    def discard_pending(self) -> None:
        """Forget the changes kept so far (after a failed flush the caller gives up on)."""
        with self._lock:
            self._pending.clear()
            self._data = None
            self._read_at = None
        self.refresh()

    def document(self) -> IndexDocument:
        """The index.json last read (fsck)."""
        return self._document

    def record_repair(self, ops: list[jf.Op]) -> None:
        """Apply removals (untag, unpin) under the exclusive lock the caller holds (fsck --repair)."""
        assert all(isinstance(op, jf.Untag | jf.Unpin) for op in ops), "only removals"
        self._replace(self._document.edited(ops, lambda desc: []))

    def compact(self) -> None:
        """No journal to compact."""

    def after_collection(self, done: str) -> None:
        """index.json names no deleted blob: gc deleted only what it did not reach."""
