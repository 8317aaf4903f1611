"""The store: an OCI image layout whose tags live in the index journal.

Layout under the root::

    oci-layout            {"imageLayoutVersion": "1.0.0"}
    index.json            kept in step with the journal, for skopeo/oras/ig
    index.journal         the source of truth for tags and pinned roots
    index.json.lock       serialises journal appends (the lock file ig uses too)
    gc.lock               lease held shared by writers, exclusively by gc
    blobs/<alg>/<hex>     immutable, read-only blobs
    ingest/               temporary files of blobs being written
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import journal_format as jf
from . import mediatypes as mt
from .blobstore import BlobNotFound, BlobStore
from .descriptor import Descriptor, GraphBudget, children, is_document, parse_document, subject, walk_graph
from .digest import Digest
from .errors import GadgetStoreError, ImageNotFound, IndexJsonBehind, StoreError
from .faults import crash_point
from .fsutil import atomic_write, ensure_real_dir
from .journal import Journal
from .locking import flocked

OCI_LAYOUT_BYTES = json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}, separators=(",", ":")).encode()
_SIGNATURE_TAG_RE = re.compile(r"(sha256|sha512)-([0-9a-f]+)(\.sig|\.att|\.sbom)?")


def signature_tag_subject(ref: str) -> Digest | None:
    """``sha256-<hex>.sig`` (cosign) and ``sha256-<hex>`` (referrers tag schema) name their subject."""
    match = _SIGNATURE_TAG_RE.fullmatch(ref)
    if match is None:
        return None
    try:
        return Digest.parse(f"{match.group(1)}:{match.group(2)}")
    except GadgetStoreError:
        return None


@dataclass
class GcReport:
    removed_blobs: list[Digest] = field(default_factory=list)
    removed_bytes: int = 0
    removed_ingest_files: int = 0
    removed_cache_entries: int = 0


class Transaction:
    """Operations collected under the store lock and appended as one journal record."""

    def __init__(self, state: jf.IndexState) -> None:
        self.state = state
        self.ops: list[jf.Op] = []

    def tag(self, ref: str, desc: Descriptor) -> None:
        self.ops.append({"op": "tag", "ref": ref, "desc": desc.to_json()})

    def untag(self, ref: str) -> None:
        self.ops.append({"op": "untag", "ref": ref})

    def pin(self, desc: Descriptor) -> None:
        self.ops.append({"op": "pin", "desc": desc.to_json()})

    def unpin(self, digest: Digest) -> None:
        self.ops.append({"op": "unpin", "digest": str(digest)})


class Store:
    """One store root. Cheap to open: replaying a compacted journal is one JSON parse."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root)
        self.journal = Journal(root / "index.journal")
        self.index_path = root / "index.json"
        self.sync_path = root / "index.json.sync"
        self.lock_path = root / "index.json.lock"
        self.lease_path = root / "gc.lock"
        self.analysis_dir = root / "analysis"
        self._deferral_lock = threading.Lock()
        self._index_deferrals = 0  # open deferred_index_json() blocks, from any thread
        self._index_behind = False  # a deferred transaction left index.json behind the journal

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path | str, readonly: bool = False, allow_damage: bool = False) -> Store:
        """Open (and unless ``readonly``, create) a store.

        A read-only open writes nothing: a layout from another tool is read from its index.json.
        A damaged journal is refused with a pointer to ``fsck --repair`` unless ``allow_damage``
        (fsck itself); an unfinished final append is cut when the store is opened for writing.
        """
        store = cls(Path(root))
        store._prepare(create=not readonly)
        store.journal.refresh()
        if not store.journal.path.exists():
            if readonly:
                store.journal.state.apply(store._ops_from_index_json())
                return store
            with store._locked():
                if not store.journal.path.exists():
                    store._adopt_existing_index()
            store.journal.refresh()
        damaged = store.journal.damage is not None and not store.journal.torn
        if damaged and not allow_damage:
            raise StoreError(
                f"index journal {store.journal.path} is damaged ({store.journal.damage}); "
                "run 'gadgetstore fsck --repair'"
            )
        if not readonly and not damaged and (store.journal.damage is not None or not store._index_json_in_step()):
            # The journal is the truth: on a full disk index.json may stay behind, but commands still
            # run (``image remove`` frees space), and each write tries again.
            with contextlib.suppress(OSError):
                store._bring_index_json_up()
        return store

    def _prepare(self, create: bool) -> None:
        layout = self.root / "oci-layout"
        if not self.root.exists():
            if not create:
                raise StoreError(f"no store at {self.root}")
            os.makedirs(self.root, 0o700, exist_ok=True)
        ensure_real_dir(self.root, 0o700)
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
        for lock in (self.lock_path, self.lease_path):
            if not lock.exists():
                os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        if not layout.exists():
            atomic_write(layout, OCI_LAYOUT_BYTES)

    def _ops_from_index_json(self) -> list[jf.Op]:
        """Tags (entries with ``ref.name``) and pins (other platform-less entries) of index.json."""
        try:
            index = json.loads(self.index_path.read_bytes())
            entries = index.get("manifests") or []
            if not isinstance(entries, list):
                raise TypeError
        except FileNotFoundError:
            return []
        except (ValueError, AttributeError, TypeError):
            raise StoreError(f"{self.index_path} is not a valid OCI image index") from None
        txn = Transaction(self.journal.state)
        for i, entry in enumerate(entries):
            desc = Descriptor.from_json(entry, f"index.json manifests[{i}]")
            ref = desc.annotations.get(mt.ANNOTATION_REF_NAME)
            if ref:
                rest = {k: v for k, v in desc.annotations.items() if k != mt.ANNOTATION_REF_NAME}
                txn.tag(ref, desc.with_annotations(rest))
            elif desc.architecture is None:
                txn.pin(desc)
        return txn.ops

    def _adopt_existing_index(self) -> None:
        """A layout written by another tool (or ig) becomes our journal's first snapshot."""
        ops = self._ops_from_index_json()
        self.journal.create_if_missing()
        self.journal.refresh()
        if ops:
            self.journal.append(ops)
        self._write_index_json()

    def _merge_foreign_index_edits(self) -> bool:
        """Adopt what another tool (skopeo, oras, ig) changed in index.json since we last wrote it.

        Our last write is remembered in ``index.json.sync`` (size, mtime, inode, and the journal's
        length then). When index.json differs from that, it is compared with what it was written
        from, the journal up to that length, so that only the other tool's own changes are
        appended; tags recorded since (index.json lags during :meth:`deferred_index_json` and after a
        crash) are kept. When that journal prefix is gone (compacted) the comparison is with the
        journal as it is, and the other tool's view wins. True when index.json was another tool's
        (readable, and now merged): the caller rewrites it.
        """
        record = self._read_sync_record()
        if not self.index_path.exists() or record.get("index") == self._index_stat_key():
            return False
        foreign = jf.IndexState()
        try:
            foreign.apply(self._ops_from_index_json())
        except GadgetStoreError:
            return False  # unreadable: not an edit to adopt; it is rewritten from the journal
        state = self.journal.state
        source = self.index_json_source(record)
        base = state if source is None else source[0]
        ops: list[jf.Op] = []
        for ref in sorted(foreign.tags.keys() | base.tags.keys()):
            theirs = foreign.tags.get(ref)
            if theirs != base.tags.get(ref) and theirs != state.tags.get(ref):
                ops.append({"op": "untag", "ref": ref} if theirs is None else {"op": "tag", "ref": ref, "desc": theirs})
        for key in sorted(foreign.pins.keys() | base.pins.keys()):
            theirs = foreign.pins.get(key)
            if theirs != base.pins.get(key) and theirs != state.pins.get(key):
                ops.append({"op": "unpin", "digest": key} if theirs is None else {"op": "pin", "desc": theirs})
        if ops:
            self.journal.append(ops)
        return True

    def index_json_source(self, record: dict[str, Any] | None = None) -> tuple[jf.IndexState, int] | None:
        """The journal state and length our last index.json was written from (``record``: the sync
        record, read when not given); None when that part of the journal is gone (compacted)."""
        record = self._read_sync_record() if record is None else record
        length, inode = record.get("journal_length"), record.get("journal_inode")
        if not isinstance(length, int) or not isinstance(inode, int):
            return None
        base = self.journal.state_at(length, inode)
        return None if base is None else (base, length)

    def _index_stat_key(self) -> list[int] | None:
        try:
            st = os.stat(self.index_path)
        except FileNotFoundError:
            return None
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def _read_sync_record(self) -> dict[str, Any]:
        try:
            record = json.loads(self.sync_path.read_bytes())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _index_json_in_step(self) -> bool:
        """Cheap check (two small reads): index.json is ours and reflects the whole journal."""
        record = self._read_sync_record()
        return record.get("journal_length") == self.journal.length and record.get("index") == self._index_stat_key()

    def _write_index_json(self) -> None:
        index = self.journal.state.oci_index(self.journal.length)
        atomic_write(self.index_path, json.dumps(index, separators=(",", ":")).encode(), 0o644)
        crash_point("index.replaced")
        record = {"journal_length": self.journal.length, "journal_inode": self.journal.inode,
                  "index": self._index_stat_key()}
        atomic_write(self.sync_path, json.dumps(record).encode(), 0o644)

    # -- locking ---------------------------------------------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return flocked(self.lock_path, exclusive=True)

    def lease(self) -> contextlib.AbstractContextManager[None]:
        """Held by writers from their first blob commit to their last tag, so gc cannot race them."""
        return flocked(self.lease_path, exclusive=False)

    @contextlib.contextmanager
    def transaction(self, done: str = "the change was recorded") -> Iterator[Transaction]:
        """Collect tag/pin operations and append them as one durable journal record.

        An error before the record is appended means nothing changed (a failed append is taken
        back). Once it is appended the change stands, so a later failure (rewriting index.json on a
        full disk) raises :class:`IndexJsonBehind`, which says ``done`` first.
        """
        with self._locked():
            self.journal.cut_tail()
            if self._merge_foreign_index_edits():
                # ours again at once, also inside a deferred block: a later merge against the old
                # base would bring back what the other tool set and we have changed since
                self._write_index_json()
            txn = Transaction(self.journal.state)
            yield txn
            if not txn.ops:
                return
            self.blobs.sync_dirs()  # every blob a record names has a durable name first
            self.journal.append(txn.ops)
            compacted = self._compact_if_due()
            with self._deferral_lock:  # not after a compaction: the base of a foreign-edit merge is gone
                if self._index_deferrals and not compacted:
                    self._index_behind = True
                    return
            self._rewrite_index_json(done)

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

    def _rewrite_index_json(self, done: str) -> None:
        """index.json after a change reached the journal (``done``); under the store lock."""
        try:
            self._write_index_json()
        except OSError as err:
            raise self._index_json_behind(done, err) from None

    def _index_json_behind(self, done: str, err: OSError) -> IndexJsonBehind:
        return IndexJsonBehind(
            f"{done}, but {self.index_path} could not be rewritten ({err.strerror or err}); the index journal "
            "has every change, and index.json is rewritten from it when the store is next opened for writing"
        )

    @contextlib.contextmanager
    def deferred_index_json(self) -> Iterator[None]:
        """Transactions inside leave index.json to the end: one write for a pull of many images.

        Each index.json update is two atomic writes (index.json and its sync record, four fsyncs and
        two new inodes); a 200-image pull made about 140 of them. The journal stays the truth and is
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
        with self._locked():
            self.journal.cut_tail()
            self._merge_foreign_index_edits()
            if not self._index_json_in_step():
                self._write_index_json()

    def _catch_up_index_json(self) -> None:
        try:
            self._bring_index_json_up()
        except OSError as err:
            raise self._index_json_behind("every change was recorded", err) from None

    def refresh(self) -> None:
        self.journal.refresh()

    def compact(self) -> None:
        """Rewrite the journal as a single snapshot (gc does this; it also happens automatically)."""
        with self._locked():
            self.journal.cut_tail()
            self.journal.compact()
            self._write_index_json()

    # -- reading ---------------------------------------------------------------------------------

    def tags(self) -> list[str]:
        return sorted(self.journal.state.tags)

    def lookup(self, ref: str) -> Descriptor | None:
        raw = self.journal.state.tags.get(ref)
        return None if raw is None else Descriptor.from_json(raw, f"tag {ref}")

    def resolve(self, ref: str, shown_as: str | None = None) -> Descriptor:
        desc = self.lookup(ref)
        if desc is None:
            raise ImageNotFound(f"image {shown_as or ref!r} not found in the store")
        return desc

    def pins(self) -> list[Descriptor]:
        return [Descriptor.from_json(raw, "pin") for raw in self.journal.state.pins.values()]

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
        out = [Descriptor.from_json(raw, ref) for ref, raw in self.journal.state.tags.items() if ref not in skip]
        return out + self.pins()

    # -- removing --------------------------------------------------------------------------------

    def remove_image(self, ref: str, shown_as: str | None = None) -> bool:
        """Untag ``ref``; when nothing else tags its digest, drop its signatures and unreachable blobs.

        Returns True when blobs were deleted, False when it was only untagged. On a full disk the
        blobs are deleted even when index.json could not be rewritten after the untag: that frees
        space, and index.json is tried again once they are gone.
        """
        shown = shown_as or ref
        shared = False
        with flocked(self.lease_path, exclusive=True):
            try:
                with self.transaction(f"{shown} was untagged") as txn:
                    desc = self.resolve(ref, shown_as)
                    shared = any(
                        other != ref and raw.get("digest") == str(desc.digest)
                        for other, raw in self.journal.state.tags.items()
                    )
                    txn.untag(ref)
                    if not shared:
                        self._drop_orphaned_signatures(txn, removed_ref=ref)
            except IndexJsonBehind:
                if shared:
                    raise
            if shared:
                return False
            self._collect_garbage(f"{shown} was removed")
            return True

    def remove_untagged(self, digests: Iterable[Digest], done: str) -> GcReport:
        """Unpin untagged images (and their signatures), then delete what nothing reaches any more.

        ``done`` says what happened when index.json cannot follow (see :meth:`transaction`).
        """
        with flocked(self.lease_path, exclusive=True):
            try:
                with self.transaction(done) as txn:
                    gone = {d for d in digests if str(d) in self.journal.state.pins}
                    for digest in sorted(gone):
                        txn.unpin(digest)
                    if gone:
                        self._drop_orphaned_signatures(txn, removed_pins=gone)
            except IndexJsonBehind:
                pass  # recorded; free the space first, index.json is tried again at the end
            return self._collect_garbage(done)

    def _drop_orphaned_signatures(self, txn: Transaction, removed_ref: str | None = None,
                                  removed_pins: set[Digest] | None = None) -> None:
        """Signatures (tags like ``sha256-<hex>.sig`` and pinned referrers) whose subject is gone."""
        signature_refs = {r for r in self.journal.state.tags if signature_tag_subject(r) is not None}
        excluded = signature_refs | ({removed_ref} if removed_ref else set())
        skipped = self._pinned_referrer_digests() | (removed_pins or set())
        image_roots = [d for d in self.roots(exclude_refs=excluded) if d.digest not in skipped]
        alive = set(self.walk(image_roots, missing_ok=True))
        for sig_ref in sorted(signature_refs):
            target = signature_tag_subject(sig_ref)
            if target is not None and target not in alive:
                txn.untag(sig_ref)
        for pin in self.pins():
            subj = self.subject_of(pin)
            if subj is not None and subj not in alive and pin.digest not in (removed_pins or set()):
                txn.unpin(pin.digest)

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

    def gc(self) -> GcReport:
        """Delete every blob no tag or pin reaches, and stale ingest files."""
        with flocked(self.lease_path, exclusive=True):
            return self._collect_garbage("unreachable blobs were deleted")

    def _collect_garbage(self, done: str) -> GcReport:
        """Caller holds the exclusive lease, so no writer has committed-but-untagged blobs.

        Blobs go first and the journal is compacted after, so a full disk (often why gc runs)
        gets its space back; ``done`` says what happened when index.json cannot follow.
        """
        report = GcReport()
        with self._locked():
            self.journal.cut_tail()
            reachable = set(self.walk(self.roots(), missing_ok=True))
        for digest in list(self.blobs.iter_digests()):
            if digest in reachable:
                continue
            st = self.blobs.stat(digest)
            if self.blobs.delete(digest):
                report.removed_blobs.append(digest)
                report.removed_bytes += st.st_size if st else 0
        report.removed_cache_entries = self._prune_analysis_cache(reachable)
        for path in self.blobs.ingest_files():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                report.removed_ingest_files += 1
        with self._locked():
            self.journal.cut_tail()
            compacted = self._compact_if_due(always=True)
            if compacted or not self._index_json_in_step():
                self._rewrite_index_json(done)
        return report

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
