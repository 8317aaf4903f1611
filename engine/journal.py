"""The index journal on disk: replay on open, append under lock, cut a bad tail, compact atomically."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from . import journal_format as jf
from .errors import StoreError
from .faults import crash_point
from .fsutil import atomic_write


class Journal:
    """One journal file. Reads need no lock; :meth:`append` and :meth:`cut_tail` need the store lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = jf.IndexState()
        self.length = 0
        self.damage: str | None = None
        self.torn = False
        self._inode: int | None = None
        self.transactions_since_snapshot = 0
        self._generations = itertools.count(1)
        self.generation = 0
        """Changes whenever :attr:`state` does (a replay that found something new, an append)."""

    def create_if_missing(self) -> None:
        if not self.path.exists():
            atomic_write(self.path, jf.HEADER, 0o644)

    def refresh(self) -> None:
        """Bring :attr:`state` up to date with what other processes appended or compacted."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_ino != self._inode or st.st_size < self.length:
                    data = f.read()
                    replay = jf.decode(data)
                    self.state = jf.replay_state(replay)
                    self.transactions_since_snapshot = len(replay.transactions)
                    self.generation = next(self._generations)
                elif st.st_size > self.length:
                    f.seek(self.length)
                    replay = jf.decode(f.read(), offset=self.length)
                    jf.replay_state(replay, self.state)
                    self.transactions_since_snapshot += len(replay.transactions)
                    if replay.transactions:
                        self.generation = next(self._generations)
                else:
                    return
        except FileNotFoundError:
            if self._inode is not None:  # the journal went away, and what it held with it
                self.generation = next(self._generations)
                self.state, self.length, self._inode, self.damage = jf.IndexState(), 0, None, None
            return  # never one here: the state is what the opener took from index.json instead
        self._inode = st.st_ino
        self.length = replay.valid_length
        self.damage = replay.damage
        self.torn = replay.torn

    @property
    def inode(self) -> int | None:
        return self._inode

    def state_at(self, length: int, inode: int | None) -> jf.IndexState | None:
        """The state the first ``length`` bytes of this journal file built; None when the file was
        replaced (compacted) since, or does not reach that far."""
        try:
            with open(self.path, "rb") as f:
                if inode is None or os.fstat(f.fileno()).st_ino != inode:
                    return None
                replay = jf.decode(f.read(length))
        except FileNotFoundError:
            return None
        if replay.valid_length != length:
            return None
        return jf.replay_state(replay)

    def cut_tail(self) -> str | None:
        """Truncate an unfinished final append (under the store lock); returns what was cut.

        A complete record that fails its checksum is not cut: that is damage, not a torn write,
        and only ``fsck --repair`` may decide what to keep.
        """
        self.refresh()
        damage = self.damage
        if damage is None:
            return None
        if not self.torn:
            raise StoreError(f"index journal {self.path} is damaged ({damage}); run 'gadgetstore fsck --repair'")
        if self.length == 0:
            self.compact()  # not even the header was written
            return damage
        with open(self.path, "r+b") as f:
            f.truncate(self.length)
            os.fsync(f.fileno())
        self.damage = None
        self.torn = False
        return damage

    def replace(self, transactions: list[list[jf.Op]]) -> None:
        """Replace the whole journal by the state these transactions build (fsck --repair)."""
        self.state = jf.IndexState()
        for ops in transactions:
            self.state.apply(ops)
        self.generation = next(self._generations)
        self.compact()

    def append(self, ops: list[jf.Op]) -> None:
        """Durably append one transaction; the caller holds the store lock and has cut the tail.

        A write or fsync that fails (a full disk) takes the record back, so that the error means
        nothing was recorded: a complete line left behind would count at the next replay.
        """
        ops = jf.stamped(ops, time.time_ns())
        line = jf.encode_transaction(ops)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            try:
                rest = memoryview(line)
                while rest:
                    rest = rest[os.write(fd, rest):]
                crash_point("journal.written")
                os.fsync(fd)
            except OSError:
                self._take_back(fd)
                raise
        finally:
            os.close(fd)
        crash_point("journal.synced")
        self.state.apply(ops)
        self.length += len(line)
        self.transactions_since_snapshot += 1
        self.generation = next(self._generations)

    def _take_back(self, fd: int) -> None:
        """Cut the file back to its last whole record after a failed append."""
        try:
            os.ftruncate(fd, self.length)
            os.fsync(fd)
        except OSError as err:
            raise StoreError(
                f"could not append to {self.path}, nor take the partial record back ({err.strerror or err}); "
                "whether the change was recorded shows at the next command"
            ) from None

    def compact(self) -> None:
        """Rewrite the journal as one snapshot transaction, atomically (temp, fsync, rename)."""
        data = jf.HEADER
        ops = self.state.snapshot_ops()
        if ops:
            data += jf.encode_transaction(ops)
        atomic_write(self.path, data, 0o644)  # the rename made durable too (its directory synced)
        crash_point("journal.compacted")
        st = os.stat(self.path)
        self._inode, self.length, self.damage, self.torn = st.st_ino, len(data), None, False
        self.transactions_since_snapshot = 1 if ops else 0

    def wants_compaction(self) -> bool:
        live = len(self.state.tags) + len(self.state.pins)
        return self.transactions_since_snapshot > max(256, live)
