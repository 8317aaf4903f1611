"""The size rules of an import, decided from tar headers alone (``ImportBudget``)."""

import pytest

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import InvalidArchive, NotEnoughSpace
from gadgetstore.engine.importlimits import FREE_SPACE_MARGIN, ImportBudget, Verdict

A, B, C = (Digest.of_bytes(text) for text in (b"a", b"b", b"c"))
KiB = 1024


def budget(free: int = FREE_SPACE_MARGIN + 100 * KiB, cap: int = 10 * KiB) -> ImportBudget:
    return ImportBudget(free=free, unreferenced_cap=cap, block=4 * KiB)


def test_a_referenced_blob_must_have_its_descriptor_size() -> None:
    b = budget()
    b.expect(A, 100)
    with pytest.raises(InvalidArchive, match="has 2147483648 bytes, its descriptor says 100"):
        b.admit(A, "blobs/sha256/a", 2**31, None)
    assert b.written == 0
    assert b.admit(A, "blobs/sha256/a", 100, None) is Verdict.WRITE


def test_descriptors_that_disagree_on_a_size_are_refused() -> None:
    b = budget()
    b.expect(A, 100)
    b.expect(A, 100)
    with pytest.raises(InvalidArchive, match="disagree"):
        b.expect(A, 101)


def test_a_stored_blob_is_only_verified_and_must_have_its_stored_size() -> None:
    b = budget()
    assert b.admit(A, "m", 5, stored_size=5) is Verdict.VERIFY
    with pytest.raises(InvalidArchive, match="stored blob"):
        b.admit(B, "m", 6, stored_size=5)
    assert b.written == 0


def test_unreferenced_blobs_are_written_only_within_the_archive_size() -> None:
    b = budget(cap=10 * KiB)
    assert b.admit(A, "a", 6 * KiB, None) is Verdict.WRITE
    assert b.admit(B, "b", 6 * KiB, None) is Verdict.DEFER  # 12 KiB of unreferenced blobs > 10 KiB
    b.expect(C, 50 * KiB)
    assert b.admit(C, "c", 50 * KiB, None) is Verdict.WRITE  # a descriptor vouches for it


def test_what_is_written_must_fit_the_free_space_less_the_margin() -> None:
    b = budget(free=FREE_SPACE_MARGIN + 40 * KiB, cap=10**9)
    assert b.admit(A, "a", 20 * KiB, None) is Verdict.WRITE  # 5 blocks plus one for the inode: 24 KiB
    with pytest.raises(NotEnoughSpace, match="up to b need 49152 bytes"):
        b.admit(B, "b", 20 * KiB, None)
    with pytest.raises(NotEnoughSpace, match="nothing was changed"):
        b.reserve([20 * KiB])
    b.reserve([10 * KiB])
