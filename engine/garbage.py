"""Deleting blobs nothing reaches: ``gc``, the collection after ``image remove``, and discarding the
blobs of an image a signature check refused.

Every collection runs under the exclusive gc lease (:meth:`.locking.StoreLocks.collecting`), so no
writer of ours is between committing a blob and tagging it. What a tag or pin reaches is kept; in
a layout shared with ig, unreferenced blobs younger than :data:`SHARED_GRACE` are kept too, since
ig writes a pull's blobs before index.json names them.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import analysiscache
from .digest import Digest

if TYPE_CHECKING:
    from .store import Store

SHARED_GRACE = 3600.0
"""Seconds an unreferenced blob of a shared layout is kept: ig writes a pull's blobs before
index.json names them, and that window is the whole download."""


@dataclass
class GcReport:
    removed_blobs: list[Digest] = field(default_factory=list)
    removed_bytes: int = 0
    removed_ingest_files: int = 0
    removed_cache_entries: int = 0
    kept_young: int = 0  # unreferenced blobs younger than the grace period, kept


def gc(store: Store, grace: float | None = None) -> GcReport:
    """Delete every blob no tag or pin reaches (none younger than ``grace`` seconds: by default none
    in gadgetstore's own store, an hour in a shared layout), and stale ingest files."""
    with store.locks.collecting():
        return collect(store, "unreachable blobs were deleted", grace)


def discard(store: Store, digests: set[Digest]) -> int:
    """Delete those of ``digests`` that nothing reaches (the blobs of an image a signature check
    refused), under the gc lease and the index lock; returns how many were deleted."""
    view = store.settled() if store.shared else store.transaction()  # (no operations: a stable view)
    with store.locks.collecting(), view:
        reachable = set(store.walk(store.roots(), missing_ok=True))
        return sum(1 for digest in sorted(digests - reachable, key=str) if store.blobs.delete(digest))


def collect(store: Store, done: str, grace: float | None = None, removed: set[Digest] | None = None) -> GcReport:
    """The collection itself; the caller holds the exclusive lease.

    Gadgetstore's own store: blobs go first and the journal is compacted after, so a full disk
    (often why gc runs) gets its space back; ``done`` says what happened when index.json cannot
    follow. A shared layout: blobs are deleted under ig's lock, so that ig names none of them
    meanwhile; ``removed`` (what ``image remove`` just unlinked) goes whatever its age.
    """
    grace = (SHARED_GRACE if store.shared else 0.0) if grace is None else grace
    report = GcReport()
    with store.settled():
        reachable = set(store.walk(store.roots(), missing_ok=True))
        if store.shared:
            _delete_unreachable(store, reachable, grace, removed or set(), report)
    if not store.shared:
        _delete_unreachable(store, reachable, grace, set(), report)
        report.removed_cache_entries = analysiscache.remove_legacy(store.root)
    report.removed_cache_entries += analysiscache.prune(store.analysis_dir, set(report.removed_blobs))
    leftovers = store.blobs.own_ingest_files() if store.shared else store.blobs.ingest_files()
    for path in leftovers:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            report.removed_ingest_files += 1
    store.index.after_collection(done)
    return report


def _delete_unreachable(store: Store, reachable: set[Digest], grace: float, removed: set[Digest],
                        report: GcReport) -> None:
    """Unreachable blobs older than ``grace`` (by ctime, which renaming a blob into ``blobs/``
    sets and nothing can set back), and those of ``removed`` whatever their age."""
    now = time.time()
    for digest in list(store.blobs.iter_digests()):
        if digest in reachable:
            continue
        st = store.blobs.stat(digest)
        if st is not None and digest not in removed and now - st.st_ctime < grace:
            report.kept_young += 1
            continue
        if store.blobs.delete(digest):
            report.removed_blobs.append(digest)
            report.removed_bytes += st.st_size if st else 0
