"""The tags of gadgetstore's own store: the index journal is the truth, index.json follows it.

Each transaction is one durable journal record, appended under the index lock; index.json (for
skopeo, oras, ig) is rewritten from the journal after it, or once at the end of a deferred block
(a bulk pull), through :class:`~.indexjson.JournalMirror`, which also merges back what another
tool changed in index.json meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from . import journal_format as jf
from .errors import IndexJsonBehind, StoreError
from .indexjson import JournalMirror
from .journal import Journal
from .locking import StoreLocks
from .tagindex import Transaction


class JournalIndex:
    """The journal of one store and the index.json mirrored from it (a :class:`~.tagindex.TagIndex`)."""

    def __init__(self, root: Path, locks: StoreLocks, sync_blobs: Callable[[], None]) -> None:
        """``sync_blobs`` makes every blob name durable: done before a record may refer to them."""
        self.journal = Journal(root / "index.journal")
        self.mirror = JournalMirror(root, self.journal)
        self.locks = locks
        self._sync_blobs = sync_blobs
        self._deferral_lock = threading.Lock()
        self._index_deferrals = 0  # open deferred() blocks, from any thread
        self._index_behind = False  # a deferred transaction left index.json behind the journal

    @property
    def state(self) -> jf.IndexState:
        return self.journal.state

    def generation(self) -> int:
        """Read what was appended since (an fstat when nothing was), then the journal's generation."""
        self.journal.refresh()
        return self.journal.generation

    def open(self, readonly: bool, allow_damage: bool) -> None:
        """Replay the journal; a layout without one (left by a crash while the store was created)
        adopts its index.json. A damaged journal is refused with a pointer to ``fsck --repair``
        unless ``allow_damage``; an unfinished final append is cut when opened for writing."""
        self.journal.refresh()
        if not self.journal.path.exists():
            if readonly:
                self.journal.state.apply(self.mirror.ops_from_index_json())
                return
            with self.locks.exclusive():
                if not self.journal.path.exists():
                    self._adopt_existing_index()
            self.journal.refresh()
        damaged = self.journal.damage is not None and not self.journal.torn
        if damaged and not allow_damage:
            raise StoreError(
                f"index journal {self.journal.path} is damaged ({self.journal.damage}); "
                "run 'gadgetstore fsck --repair'"
            )
        if not readonly and not damaged and (self.journal.damage is not None or not self.mirror.in_step()):
            # The journal is the truth: on a full disk index.json may stay behind, but commands still
            # run (``image remove`` frees space), and each write tries again.
            with contextlib.suppress(OSError):
                self._bring_index_json_up()

    def _adopt_existing_index(self) -> None:
        """A layout written by another tool becomes our journal's first snapshot."""
        ops = self.mirror.ops_from_index_json()
        self.journal.create_if_missing()
        self.journal.refresh()
        if ops:
            self.journal.append(ops)
        self.mirror.write()

    def refresh(self) -> None:
        self.journal.refresh()

    def index_json_source(self) -> tuple[jf.IndexState, int] | None:
        """The journal state and length our last index.json was written from."""
        return self.mirror.source()

    @contextlib.contextmanager
    def settled(self) -> Iterator[None]:
        """The index lock held and the journal current (a torn tail cut): a stable view."""
        with self.locks.exclusive():
            self.journal.cut_tail()
            yield

    @contextlib.contextmanager
    def transaction(self, done: str = "the change was recorded") -> Iterator[Transaction]:
        """Collect tag/pin operations and append them as one durable journal record.

        An error before the record is appended means nothing changed (a failed append is taken
        back). Once it is appended the change stands, so a later failure (rewriting index.json on a
        full disk) raises :class:`IndexJsonBehind`, which says ``done`` first.
        """
        with self.locks.exclusive():
            self.journal.cut_tail()
            if self.mirror.merge_foreign_edits():
                # ours again at once, also inside a deferred block: a later merge against the old
                # base would bring back what the other tool set and we have changed since
                self.mirror.write()
            txn = Transaction(self.journal.state)
            yield txn
            if not txn.ops:
                return
            self._sync_blobs()
            self.journal.append(txn.ops)
            compacted = self._compact_if_due()
            with self._deferral_lock:  # not after a compaction: the base of a foreign-edit merge is gone
                if self._index_deferrals and not compacted:
                    self._index_behind = True
                    return
            self.rewrite_index_json(done)

    def _compact_if_due(self, always: bool = False) -> bool:
        """Compact a long journal (any, with ``always``); True when it was. A failure (a full disk)
        leaves the journal whole and is no error: compacting only saves space and replay time, and
        the next commit tries again."""
        if not always and not self.journal.wants_compaction():
            return False
        try:
            self.journal.compact()
        except OSError:
            return False
        return True

    def rewrite_index_json(self, done: str) -> None:
        """index.json after a change reached the journal (``done``); under the index lock."""
        try:
            self.mirror.write()
        except OSError as err:
            raise self._index_json_behind(done, err) from None

    def _index_json_behind(self, done: str, err: OSError) -> IndexJsonBehind:
        return IndexJsonBehind(
            f"{done}, but {self.mirror.index_path} could not be rewritten ({err.strerror or err}); the index "
            "journal has every change, and index.json is rewritten from it when the store is next opened for writing"
        )

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Transactions inside leave index.json to the end: one write for a pull of many images.

        Each index.json update is two atomic writes (index.json and its sync record), each synced and
        each a new inode, and a bulk pull made one per image it tagged. The journal stays the truth and is
        appended durably as before. Until the block ends, index.json (read by other OCI tools) lags
        the journal; a crash before then leaves it behind, and the next open for writing sees the
        sync record's journal length fall short and rewrites it (see :meth:`open`).
        """
        with self._deferral_lock:
            self._index_deferrals += 1
        try:
            yield
        finally:
            with self._deferral_lock:
                self._index_deferrals -= 1
                catch_up = self._index_deferrals == 0 and self._index_behind
                if catch_up:
                    self._index_behind = False
            if catch_up:
                self._catch_up_index_json()

    def _bring_index_json_up(self) -> None:
        """Cut a torn journal tail, adopt another tool's edits, and rewrite index.json unless
        another writer has brought it up to date meanwhile."""
        with self.locks.exclusive():
            self.journal.cut_tail()
            self.mirror.merge_foreign_edits()
            if not self.mirror.in_step():
                self.mirror.write()

    def _catch_up_index_json(self) -> None:
        try:
            self._bring_index_json_up()
        except OSError as err:
            raise self._index_json_behind("every change was recorded", err) from None

    def compact(self) -> None:
        """Rewrite the journal as a single snapshot (gc does this; it also happens automatically)."""
        with self.locks.exclusive():
            self.journal.cut_tail()
            self.journal.compact()
            self.mirror.write()

    def after_collection(self, done: str) -> None:
        """After gc deleted blobs: compact the journal, and bring index.json up if it lags."""
        with self.locks.exclusive():
            self.journal.cut_tail()
            compacted = self._compact_if_due(always=True)
            if compacted or not self.mirror.in_step():
                self.rewrite_index_json(done)

    def flush(self) -> None:
        """Nothing is kept in memory: every transaction is in the journal already."""

    def discard_pending(self) -> None:
        """Nothing is kept in memory: every transaction is in the journal already."""

    def record_repair(self, ops: list[jf.Op]) -> None:
        """``fsck --repair``: one journal record of these removals, then index.json (under the lock)."""
        if ops:
            self.journal.append(ops)
        self.mirror.write()
