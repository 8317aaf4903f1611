"""How many bytes an archive import may write, decided from each tar header before its data (pure).

A tar header declares its member's size before the member's bytes follow; that is where the
decision is made, since a few KB of archive can declare GiBs (a sparse member of a plain tar, or a
zstd stream of zeros). The rules, in the order :meth:`ImportBudget.admit` applies them:

* A blob that a descriptor read so far refers to must have exactly the size that descriptor
  declares; a blob the store already holds, the size it has there (it is then only verified, not
  written).
* Everything written must fit in the store's free space, less :data:`FREE_SPACE_MARGIN` for the
  journal record, index.json and its sync record. Sizes are counted in whole file-system blocks
  and summed over the import, so the check is of the total written so far plus this member.
* A blob that nothing read so far refers to (tar order is arbitrary: ig and our export put
  index.json after the blobs) is written only while all such blobs together stay within the
  archive's own size: a plain tar cannot hold more, and a compressed one that expands further is
  not trusted with more of the disk than it takes itself. Past that the member is deferred: the
  caller skips its bytes and reads the archive again once the descriptors read meanwhile say what
  the member must be (:meth:`ImportBudget.reserve` then checks their total against the free space
  before anything of that pass is written). A member nothing refers to is never written.

So an archive never costs more disk than its own size plus what its descriptors vouch for, and
never more than the free space; one whose sizes do not add up is refused before its bytes land.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from .digest import Digest
from .errors import InvalidArchive, NotEnoughSpace

FREE_SPACE_MARGIN = 1024 * 1024


class Verdict(enum.Enum):
    WRITE = "write"  # stream the member into ingest/
    VERIFY = "verify"  # the store has the blob: hash the member's bytes without keeping them
    DEFER = "defer"  # skip the bytes now; a later pass writes the member if something refers to it


@dataclass
class ImportBudget:
    free: int
    """Free bytes on the store's file system when the import began."""
    unreferenced_cap: int
    """Bytes of blobs nothing refers to yet that may be written: the archive file's size."""
    block: int = 4096
    expected: dict[Digest, int] = field(default_factory=dict)
    written: int = 0
    unreferenced: int = 0

    def expect(self, digest: Digest, size: int) -> None:
        """A descriptor says the blob ``digest`` has ``size`` bytes; two that disagree are refused."""
        known = self.expected.setdefault(digest, size)
        if known != size:
            raise InvalidArchive(f"blob {digest}: the archive's descriptors disagree on its size "
                                 f"({known} and {size} bytes)")

    def admit(self, digest: Digest, name: str, declared: int, stored_size: int | None) -> Verdict:
        """What to do with the member ``name`` holding ``digest``, from its header alone."""
        expected = self.expected.get(digest)
        if expected is not None and declared != expected:
            raise InvalidArchive(f"archive member {name} has {declared} bytes, its descriptor says {expected}")
        if stored_size is not None:
            if declared != stored_size:
                raise InvalidArchive(f"archive member {name} has {declared} bytes, "
                                     f"the stored blob {digest} has {stored_size}")
            return Verdict.VERIFY
        if expected is None and self.unreferenced + declared > self.unreferenced_cap:
            return Verdict.DEFER
        self._take(self._blocks(declared), name)
        if expected is None:
            self.unreferenced += declared
        return Verdict.WRITE

    def reserve(self, sizes: Iterable[int]) -> None:
        """Before a pass that writes deferred members: their total must fit, or nothing is written."""
        total = sum(self._blocks(size) for size in sizes)
        if self.written + total + FREE_SPACE_MARGIN > self.free:
            raise self._no_space(self.written + total, "the archive's blobs")

    def _take(self, cost: int, name: str) -> None:
        if self.written + cost + FREE_SPACE_MARGIN > self.free:
            raise self._no_space(self.written + cost, f"the archive's blobs up to {name}")
        self.written += cost

    def _blocks(self, size: int) -> int:
        """What a file of ``size`` bytes takes on disk: whole blocks, and one for its inode."""
        return (-(-size // self.block) + 1) * self.block

    def _no_space(self, needed: int, what: str) -> NotEnoughSpace:
        return NotEnoughSpace(f"not enough free space: {what} need {needed} bytes and {FREE_SPACE_MARGIN} "
                              f"more are kept spare, but {self.free} are free; nothing was changed in the store")
