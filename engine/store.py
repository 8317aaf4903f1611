"""The store: an OCI image layout, either gadgetstore's own or one it shares with ig.

What kind a directory is, is decided when it is opened (:func:`store_kind`):

- **gadgetstore's own store** (it has ``index.journal`` or ``gc.lock``): the index journal is the
  truth for tags and index.json follows it (:mod:`.journalindex`)::

      oci-layout            {"imageLayoutVersion": "1.0.0"}
      index.json            kept in step with the journal, for skopeo/oras/ig
      index.journal         the source of truth for tags and pinned roots
      index.json.sync       our last index.json write, to tell another tool's edits apart
      index.json.lock       the index lock (the lock file ig uses too)
      gc.lock               the gc lease
      blobs/<alg>/<hex>     immutable, read-only blobs
      ingest/               temporary files of blobs being written
      analysis/             cached layer analyses (inspect, mount)

- **a layout another tool made** (ig's ``/var/lib/ig/oci-store``, oras, skopeo): index.json is
  the truth and ig's rules apply (:mod:`.layoutindex`). Opening it writes nothing, and reading
  commands never do; writing commands add only what ig would (blobs, index.json entries, the lock
  file, ``ingest/``), plus gadgetstore's own ``ingest/ingest-…`` files while a blob is written and
  ``quarantine/`` after ``fsck --repair``. Analyses are cached outside it (:func:`.paths.cache_home`).
- **nothing yet**: made as ig makes its store where ig keeps one (:func:`.paths.is_ig_store_path`),
  else as gadgetstore's own.

The locks of either kind are :class:`~.locking.StoreLocks` (``store.locks``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import journal_format as jf
from . import mediatypes as mt
from .blobstore import BlobNotFound, BlobStore
from .descriptor import Descriptor, GraphBudget, children, is_document, parse_document, subject, walk_graph
from .digest import Digest
from .errors import GadgetStoreError, ImageNotFound, IndexJsonBehind, IntegrityError, StoreError
from .fsutil import atomic_write, ensure_real_dir
from .indexjson import EMPTY_INDEX
from .journal import Journal
from .journalindex import JournalIndex
from .layoutindex import IndexPlan, LayoutIndex
from .locking import StoreLocks
from .paths import cache_home, is_ig_store_path

OCI_LAYOUT_BYTES = json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}, separators=(",", ":")).encode()
_SIGNATURE_TAG_RE = re.compile(r"(sha256|sha512)-([0-9a-f]+)(\.sig|\.att|\.sbom)?")
SHARED_GRACE = 3600.0
"""Seconds an unreferenced blob of a shared layout is kept: ig writes a pull's blobs before
index.json names them, and that window is the whole download."""
OWN_MARKERS = ("index.journal", "gc.lock", "index.json.sync")

Transaction = jf.Transaction


def signature_tag_subject(ref: str) -> Digest | None:
    """``sha256-<hex>.sig`` (cosign) and ``sha256-<hex>`` (referrers tag schema) name their subject."""
    match = _SIGNATURE_TAG_RE.fullmatch(ref)
    if match is None:
        return None
    try:
        return Digest.parse(f"{match.group(1)}:{match.group(2)}")
    except GadgetStoreError:
        return None


def store_kind(root: Path) -> str:
    """``own`` (gadgetstore's: it has a journal or a gc lease), ``shared`` (an OCI layout another
    tool made, such as ig's store) or ``new`` (no layout there yet)."""
    if any(os.path.lexists(root / name) for name in OWN_MARKERS):
        return "own"
    return "shared" if os.path.lexists(root / "oci-layout") else "new"


@dataclass
class GcReport:
    removed_blobs: list[Digest] = field(default_factory=list)
    removed_bytes: int = 0
    removed_ingest_files: int = 0
    removed_cache_entries: int = 0
    kept_young: int = 0  # unreferenced blobs younger than the grace period, kept


class Store:
    """One store root. Cheap to open: replaying a compacted journal, or parsing index.json."""

    def __init__(self, root: Path, shared: bool = False) -> None:
        self.root = root
        self.shared = shared  # a layout another tool made (ig's store): index.json is the truth
        self.index_path = root / "index.json"
        self.blobs = BlobStore(root, ingest_mode=0o755 if shared else 0o700)
        self._index: JournalIndex | LayoutIndex
        if shared:
            self.locks = StoreLocks(root / "index.json.lock", lease_dir=self.blobs.ingest_dir)
            self.analysis_dir = cache_home() / "analysis"
            self._index = LayoutIndex(root, self.locks, self.index_plan, self.blobs.sync_dirs)
        else:
            self.locks = StoreLocks(root / "index.json.lock", lease_file=root / "gc.lock")
            self.analysis_dir = root / "analysis"
            self._index = JournalIndex(root, self.locks, self.blobs.sync_dirs, lambda: self._write_index_json())

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path | str, readonly: bool = False, allow_damage: bool = False) -> Store:
        """Open (and unless ``readonly``, create) a store.

        A read-only open writes nothing, and neither does any open of a layout another tool made.
        A damaged journal is refused with a pointer to ``fsck --repair`` unless ``allow_damage``
        (fsck itself); an unfinished final append is cut when the store is opened for writing.
        """
        root = Path(root)
        kind = store_kind(root)
        if kind == "new" and not readonly and is_ig_store_path(root):
            _create_ig_layout(root)
            kind = "shared"
        store = cls(root, shared=kind == "shared")
        store._prepare(create=not readonly and kind != "shared")
        if isinstance(store._index, LayoutIndex):
            store._index.open()
        else:
            store._index.open(readonly, allow_damage)
        return store

    def _prepare(self, create: bool) -> None:
        layout = self.root / "oci-layout"
        if not self.root.exists():
            if not create:
                raise StoreError(f"no store at {self.root}")
            os.makedirs(self.root, 0o700, exist_ok=True)
        if create:
            ensure_real_dir(self.root, 0o700)
        elif not stat.S_ISDIR(os.lstat(self.root).st_mode):
            raise StoreError(f"{self.root} is not a directory (symlinks are refused)")
        if layout.exists():
            try:
                version = json.loads(layout.read_bytes()).get("imageLayoutVersion")
            except (ValueError, AttributeError):
                version = None
            if version != mt.OCI_LAYOUT_VERSION:
                raise StoreError(f"{layout} is not an OCI image layout version {mt.OCI_LAYOUT_VERSION}")
        elif not create:
            raise StoreError(f"no store at {self.root} (oci-layout is missing)")
        if not create:
            return
        self.blobs.create_dirs()
        for lock in (self.locks.index_lock, self.locks.lease_file):
            if lock is not None and not lock.exists():
                os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        if not layout.exists():
            atomic_write(layout, OCI_LAYOUT_BYTES)

    @property
    def journal(self) -> Journal:
        """The index journal of gadgetstore's own store (a shared layout has none)."""
        if not isinstance(self._index, JournalIndex):
            raise StoreError(f"{self.root} is shared with another tool and keeps no index journal")
        return self._index.journal

    def _write_index_json(self) -> None:
        """Rewrite index.json from the journal: every such write of gadgetstore's own store goes here."""
        assert isinstance(self._index, JournalIndex)
        self._index.mirror.write()

    def index_json_source(self) -> tuple[jf.IndexState, int] | None:
        """The journal state and length our last index.json was written from (own store only)."""
        return self._index.mirror.source() if isinstance(self._index, JournalIndex) else None

    # -- locking and changing --------------------------------------------------------------------

    def lease(self) -> contextlib.AbstractContextManager[None]:
        """Held by writers from their first blob commit to their last tag, so gc cannot race them."""
        return self.locks.lease()

    def transaction(self, done: str = "the change was recorded") -> contextlib.AbstractContextManager[Transaction]:
        """Collect tag/pin operations and record them as one change (see the index kinds: a journal
        record, or one rewrite of a shared layout's index.json)."""
        return self._index.transaction(done)

    def deferred_index_json(self) -> contextlib.AbstractContextManager[None]:
        """Transactions inside write index.json once, when the outermost block ends (a bulk pull)."""
        return self._index.deferred()

    def flush_index(self) -> None:
        """A shared layout: write what a deferred block has kept so far. Raises
        :class:`~.layoutindex.BlobsMissing` (keeping the changes) when blobs they name vanished."""
        if isinstance(self._index, LayoutIndex):
            self._index.flush()

    def abandon_index_changes(self) -> None:
        """A shared layout: forget what a deferred block kept after its flush failed for good."""
        if isinstance(self._index, LayoutIndex):
            self._index.discard_pending()

    def settled(self) -> contextlib.AbstractContextManager[None]:
        """The index lock held exclusively and the tags current: a view nobody changes meanwhile."""
        return self._index.settled()

    def refresh(self) -> None:
        self._index.refresh()

    def record_repair(self, ops: list[jf.Op]) -> None:
        """``fsck --repair``: record these removals and rewrite index.json (the caller holds the
        index lock): a journal record in gadgetstore's own store, an edit of a shared layout's."""
        if isinstance(self._index, LayoutIndex):
            self._index.replace(ops)
            return
        if ops:
            self._index.journal.append(ops)
        self._write_index_json()

    def compact(self) -> None:
        """Rewrite the journal as a single snapshot (gc does this; it also happens automatically)."""
        if isinstance(self._index, JournalIndex):
            self._index.compact()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def state(self) -> jf.IndexState:
        """Tags (reference → descriptor JSON) and pins (digest → descriptor JSON); in a shared
        layout every untagged entry of index.json counts as a pin."""
        return self._index.state

    def version(self) -> tuple[object, int]:
        """Changes whenever the tags may have changed (compare the first item with ``is``)."""
        return self._index.version()

    def tags(self) -> list[str]:
        return sorted(self.state.tags)

    def lookup(self, ref: str) -> Descriptor | None:
        raw = self.state.tags.get(ref)
        return None if raw is None else Descriptor.from_json(raw, f"tag {ref}")

    def resolve(self, ref: str, shown_as: str | None = None) -> Descriptor:
        desc = self.lookup(ref)
        if desc is None:
            raise ImageNotFound(f"image {shown_as or ref!r} not found in the store")
        return desc

    def pins(self) -> list[Descriptor]:
        return [Descriptor.from_json(raw, "pin") for raw in self.state.pins.values()]

    def read_document(self, desc: Descriptor) -> dict[str, Any]:
        data = self.blobs.read(desc.digest, max_size=mt.MAX_MANIFEST_BYTES)
        if len(data) != desc.size:
            raise StoreError(f"blob {desc.digest} is {len(data)} bytes, its descriptor says {desc.size}")
        return parse_document(data, f"manifest {desc.digest}")

    def walk(self, roots: Iterable[Descriptor], missing_ok: bool = False) -> dict[Digest, Descriptor]:
        """Every descriptor reachable from ``roots`` (roots included), keyed by digest.

        Not bounded like one image (see :meth:`walk_image`): a walk of the whole store (gc, remove)
        must reach everything a tag keeps alive, and each blob is visited once.
        """
        return walk_graph(roots, functools.partial(self._children, missing_ok))

    def walk_image(self, root: Descriptor, where: str) -> dict[Digest, Descriptor]:
        """What :meth:`walk` gives for one image, within the bounds of :class:`GraphBudget` (the
        ones a pull checks); ``where`` names the image in the error."""
        return walk_graph([root], functools.partial(self._children, False), budget=GraphBudget(where, root))

    def _children(self, missing_ok: bool, desc: Descriptor) -> list[Descriptor]:
        if not is_document(desc):
            return []
        try:
            doc = self.read_document(desc)
        except BlobNotFound:
            if missing_ok:
                return []
            raise
        return children(doc, f"manifest {desc.digest}")

    def roots(self, exclude_refs: Iterable[str] = ()) -> list[Descriptor]:
        skip = set(exclude_refs)
        out = [Descriptor.from_json(raw, ref) for ref, raw in self.state.tags.items() if ref not in skip]
        return out + self.pins()

    def index_plan(self, roots: list[Descriptor]) -> IndexPlan:
        """Before ``roots`` are named in a shared layout's index.json (under its lock): the blobs of
        their graphs that are missing, and the manifests and indexes below each root. A blob of the
        wrong size, or a manifest that is damaged, is an error: naming it would break every ig command."""
        plan = IndexPlan()
        examined: dict[Digest, list[Descriptor]] = {}
        missing: dict[Digest, Descriptor] = {}

        def expand(desc: Descriptor) -> list[Descriptor]:
            if desc.digest not in examined:
                examined[desc.digest] = self._present_children(desc, missing)
            return examined[desc.digest]

        for root in roots:
            walked = walk_graph([root], expand)
            plan.below[root.digest] = [d for d in walked.values() if d.digest != root.digest and is_document(d)]
        plan.missing = list(missing.values())
        return plan

    def _present_children(self, desc: Descriptor, missing: dict[Digest, Descriptor]) -> list[Descriptor]:
        st = self.blobs.stat(desc.digest)
        if st is None:
            missing[desc.digest] = desc
            return []
        if st.st_size != desc.size:
            raise IntegrityError(f"blob {desc.digest} has {st.st_size} bytes, its descriptor says {desc.size}")
        if not is_document(desc):
            return []
        try:
            return children(self.read_document(desc), f"manifest {desc.digest}")
        except BlobNotFound:
            missing[desc.digest] = desc
            return []

    # -- removing --------------------------------------------------------------------------------

    def remove_image(self, ref: str, shown_as: str | None = None) -> bool:
        """Untag ``ref``; when nothing else tags its digest, drop its signatures and unreachable blobs.

        Returns True when blobs were deleted, False when it was only untagged. On a full disk the
        blobs are deleted even when index.json could not be rewritten after the untag: that frees
        space, and index.json is tried again once they are gone. In a shared layout the image's
        untagged entries go too, as ig's ``image remove`` deletes them, and its blobs are deleted
        at once (the grace period is for blobs nothing has referred to yet).
        """
        shown = shown_as or ref
        shared = False
        dropped: list[Descriptor] = []
        with self.locks.collecting():
            try:
                with self.transaction(f"{shown} was untagged") as txn:
                    desc = self.resolve(ref, shown_as)
                    shared = any(
                        other != ref and raw.get("digest") == str(desc.digest)
                        for other, raw in self.state.tags.items()
                    )
                    txn.untag(ref)
                    if not shared:
                        dropped = [desc, *self._drop_orphans(txn, ref, desc)]
            except IndexJsonBehind:
                if shared:
                    raise
            if shared:
                return False
            removed = set(self.walk(dropped, missing_ok=True)) if self.shared else set()
            self._collect_garbage(f"{shown} was removed", removed=removed)
            return True

    def untagged_images(self, present_only: bool = True) -> list[Descriptor]:
        """Images no tag names: pins that are no signature (an untagged build), and no tag and no
        other of them reaches. In a shared layout that leaves out the untagged entries ig writes for
        the per-arch manifests of every image, tagged or not. ``present_only`` leaves out entries
        whose blob is gone (what ig's gc leaves behind); a digest lookup still finds them."""
        tagged = [Descriptor.from_json(raw, ref) for ref, raw in self.state.tags.items()]
        candidates = [pin for pin in self.pins()
                      if is_document(pin) and (not present_only or self.blobs.has(pin.digest))
                      and self.subject_of(pin) is None]
        reached = set(self.walk(tagged, missing_ok=True))
        for pin in candidates:
            reached |= set(self.walk([pin], missing_ok=True)) - {pin.digest}
        return [pin for pin in candidates if pin.digest not in reached]

    def remove_untagged(self, digests: Iterable[Digest], grace: float | None = None) -> tuple[list[Digest], GcReport]:
        """Remove the untagged images among ``digests`` (see :meth:`untagged_images`): each one's
        entry, the entries below it and the signatures of it that nothing else needs; then their
        blobs, in one collection. Returns the images removed (none changes nothing) and the report."""
        removed_images: list[Digest] = []
        dropped: list[Descriptor] = []
        with self.locks.collecting():
            for digest in sorted(set(digests), key=str):
                with self.transaction(f"{digest} was removed") as txn:
                    root = next((image for image in self.untagged_images() if image.digest == digest), None)
                    if root is not None:
                        txn.unpin(digest)
                        dropped += [root, *self._drop_orphans(txn, None, root)]
                        removed_images.append(digest)
            if not removed_images:
                return [], GcReport()
            removed = set(self.walk(dropped, missing_ok=True)) if self.shared else set()
            done = "untagged images were removed" if len(removed_images) > 1 else f"{removed_images[0]} was removed"
            return removed_images, self._collect_garbage(done, grace, removed=removed)

    def _drop_orphans(self, txn: Transaction, removed_ref: str | None, removed_root: Descriptor) -> list[Descriptor]:
        """Signatures (tags like ``sha256-<hex>.sig`` and pinned referrers) whose subject is gone;
        returns them. In a shared layout also the untagged entries of the removed image's graph
        that nothing else reaches (its per-arch manifests): ig's remove deletes those, and a
        referrer left pointing into them would make ig's gc loop for ever. ``removed_ref`` is the
        tag removed, None when an untagged image (the pin ``removed_root``) is."""
        signature_refs = {r for r in self.state.tags if signature_tag_subject(r) is not None}
        referrers = self._pinned_referrer_digests()
        graph = set(self.walk([removed_root], missing_ok=True)) if self.shared else set()
        if removed_ref is None:
            graph.add(removed_root.digest)
        gone = signature_refs if removed_ref is None else signature_refs | {removed_ref}
        image_roots = [d for d in self.roots(exclude_refs=gone) if d.digest not in referrers and d.digest not in graph]
        alive = set(self.walk(image_roots, missing_ok=True))
        dropped: list[Descriptor] = []
        for pin in self.pins():
            if (self.shared and pin.digest in graph and pin.digest not in alive and pin.digest not in referrers
                    and pin.digest != removed_root.digest):
                txn.unpin(pin.digest)
        for sig_ref in sorted(signature_refs):
            target = signature_tag_subject(sig_ref)
            sig = self.lookup(sig_ref)
            if target is not None and target not in alive and sig is not None:
                txn.untag(sig_ref)
                dropped.append(sig)
        for pin in self.pins():
            subj = self.subject_of(pin)
            if subj is not None and subj not in alive:
                txn.unpin(pin.digest)
                dropped.append(pin)
        return dropped

    def _pinned_referrer_digests(self) -> set[Digest]:
        return {pin.digest for pin in self.pins() if self.subject_of(pin) is not None}

    def subject_of(self, desc: Descriptor) -> Digest | None:
        """The digest a referrer (a signature, say) is attached to; None for anything else."""
        if not is_document(desc):
            return None
        try:
            subj = subject(self.read_document(desc), f"manifest {desc.digest}")
        except GadgetStoreError:
            return None
        return subj.digest if subj else None

    def gc(self, grace: float | None = None) -> GcReport:
        """Delete every blob no tag or pin reaches (none younger than ``grace`` seconds: by default
        none in gadgetstore's own store, an hour in a shared layout), and stale ingest files."""
        with self.locks.collecting():
            return self._collect_garbage("unreachable blobs were deleted", grace)

    def discard(self, digests: set[Digest]) -> int:
        """Delete those of ``digests`` that nothing reaches (the blobs of an image a signature check
        refused), under the gc lease and the index lock; returns how many were deleted."""
        view = self.settled() if self.shared else self.transaction()  # (no operations: a stable view)
        with self.locks.collecting(), view:
            reachable = set(self.walk(self.roots(), missing_ok=True))
            return sum(1 for digest in sorted(digests - reachable, key=str) if self.blobs.delete(digest))

    def _collect_garbage(self, done: str, grace: float | None = None, removed: set[Digest] | None = None) -> GcReport:
        """Caller holds the exclusive lease, so no writer of ours has committed-but-untagged blobs.

        Gadgetstore's own store: blobs go first and the journal is compacted after, so a full disk
        (often why gc runs) gets its space back; ``done`` says what happened when index.json cannot
        follow. A shared layout: blobs are deleted under ig's lock, so that ig names none of them
        meanwhile; ``removed`` (what ``image remove`` just unlinked) goes whatever its age.
        """
        grace = (SHARED_GRACE if self.shared else 0.0) if grace is None else grace
        report = GcReport()
        with self.settled():
            reachable = set(self.walk(self.roots(), missing_ok=True))
            if self.shared:
                self._delete_unreachable(reachable, grace, removed or set(), report)
        if isinstance(self._index, JournalIndex):
            self._delete_unreachable(reachable, grace, set(), report)
            report.removed_cache_entries = self._prune_analysis_cache(reachable)
        leftovers = self.blobs.own_ingest_files() if self.shared else self.blobs.ingest_files()
        for path in leftovers:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                report.removed_ingest_files += 1
        if isinstance(self._index, JournalIndex):
            self._index.after_collection(done)
        return report

    def _delete_unreachable(self, reachable: set[Digest], grace: float, removed: set[Digest],
                            report: GcReport) -> None:
        """Unreachable blobs older than ``grace`` (by ctime, which renaming a blob into ``blobs/``
        sets and nothing can set back), and those of ``removed`` whatever their age."""
        now = time.time()
        for digest in list(self.blobs.iter_digests()):
            if digest in reachable:
                continue
            st = self.blobs.stat(digest)
            if st is not None and digest not in removed and now - st.st_ctime < grace:
                report.kept_young += 1
                continue
            if self.blobs.delete(digest):
                report.removed_blobs.append(digest)
                report.removed_bytes += st.st_size if st else 0

    def _prune_analysis_cache(self, reachable: set[Digest]) -> int:
        """Analysis results (``analysis/<version>/<alg>/<hex>.<kind>``) of layers and manifests that are gone."""
        removed = 0
        for entry in sorted(self.analysis_dir.glob("*/*/*")):
            try:
                digest = Digest.parse(f"{entry.parent.name}:{entry.name.split('.', 1)[0]}")
            except GadgetStoreError:
                digest = None
            if (digest is None or digest not in reachable) and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed += 1
        return removed


def _create_ig_layout(root: Path) -> None:
    """A new store where ig keeps its own, made as ig makes it: the directory 0700, then under the
    index lock ``blobs/``, ``oci-layout`` and an empty ``index.json`` (oras ``oci.New``)."""
    for directory in [*reversed(root.parents), root]:  # MkdirAll(…, 0700): every directory it makes
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    ensure_real_dir(root, 0o700)
    with StoreLocks(root / "index.json.lock", lease_dir=root / "ingest").exclusive():
        ensure_real_dir(root / "blobs")
        if not (root / "oci-layout").exists():
            atomic_write(root / "oci-layout", OCI_LAYOUT_BYTES, 0o644)
        if not (root / "index.json").exists():
            atomic_write(root / "index.json", EMPTY_INDEX, 0o644)

