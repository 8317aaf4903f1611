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

- **a layout another tool made** (ig's ``/var/lib/ig/oci-store``, oras, skopeo): index.json is
  the truth and ig's rules apply (:mod:`.layoutindex`). Opening it writes nothing, and reading
  commands never do; writing commands add only what ig would (blobs, index.json entries, the lock
  file, ``ingest/``), plus gadgetstore's own ``ingest/ingest-…`` files while a blob is written and
  ``quarantine/`` after ``fsck --repair``.
- **nothing yet**: made as ig makes its store where ig keeps one (:func:`.paths.is_ig_store_path`),
  else as gadgetstore's own.

The locks of either kind are :class:`~.locking.StoreLocks` (``store.locks``). Reading commands
write nothing into a store of either kind: inspect's analyses are cached outside it
(:mod:`.analysiscache`).

:class:`Store` is the façade every command uses; each of its jobs has a module of its own:

- opening and the layout on disk: here;
- bytes becoming blobs, from every producer (pull, import, build, sign): :mod:`.ingest`
  (``store.ingest``);
- the tags and how they change (transactions): :mod:`.tagindex`, kept by :mod:`.journalindex` or
  :mod:`.layoutindex` (``store.index``), with index.json read and written by :mod:`.indexjson`;
- reading tags, documents and graphs: :mod:`.storeread`;
- removing images: :mod:`.removal`; deleting unreachable blobs: :mod:`.garbage`;
- the policies: signatures go with their image (:mod:`.orphans`), the analysis cache
  (:mod:`.analysiscache`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import analysiscache, garbage, removal, storeread
from . import journal_format as jf
from . import mediatypes as mt
from .blobstore import BlobStore
from .descriptor import Descriptor
from .digest import Digest
from .errors import StoreError
from .fsutil import atomic_write, ensure_durable_dir
from .garbage import GcReport
from .gojson import go_loads
from .indexjson import EMPTY_INDEX
from .ingest import Ingest
from .journal import Journal
from .journalindex import JournalIndex
from .layoutindex import LayoutIndex
from .locking import StoreLocks
from .paths import is_ig_store_path
from .tagindex import TagIndex, Transaction

OCI_LAYOUT_BYTES = json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}, separators=(",", ":")).encode()
OWN_MARKERS = ("index.journal", "gc.lock", "index.json.sync")


def store_kind(root: Path) -> str:
    """``own`` (gadgetstore's: it has a journal or a gc lease), ``shared`` (an OCI layout another
    tool made, such as ig's store) or ``new`` (no layout there yet)."""
    if any(os.path.lexists(root / name) for name in OWN_MARKERS):
        return "own"
    return "shared" if os.path.lexists(root / "oci-layout") else "new"


class Store:
    """One store root. Cheap to open: replaying a compacted journal, or parsing index.json."""

    def __init__(self, root: Path, shared: bool = False) -> None:
        self.root = root
        self.shared = shared  # a layout another tool made (ig's store): index.json is the truth
        self.index_path = root / "index.json"
        self.blobs = BlobStore(root, ingest_mode=0o755 if shared else 0o700)
        self.analysis_dir = analysiscache.directory()
        self.index: TagIndex
        """The tags and pins, and how they change (see :mod:`.tagindex`); the methods below use it."""
        if shared:
            self.locks = StoreLocks(root / "index.json.lock", lease_dir=self.blobs.ingest_dir)
            self.index = LayoutIndex(root, self.locks, functools.partial(storeread.index_plan, self.blobs),
                                     self.blobs.sync_dirs)
        else:
            self.locks = StoreLocks(root / "index.json.lock", lease_file=root / "gc.lock")
            self.index = JournalIndex(root, self.locks, self.blobs.sync_dirs)

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
        store.index.open(readonly, allow_damage)
        return store

    def _prepare(self, create: bool) -> None:
        layout = self.root / "oci-layout"
        if not self.root.exists():
            if not create:
                raise StoreError(f"no store at {self.root}")
            os.makedirs(self.root.parent, exist_ok=True)
        if create:
            ensure_durable_dir(self.root, 0o700)  # its name lasts before anything in it is relied on
        elif not stat.S_ISDIR(os.lstat(self.root).st_mode):
            raise StoreError(f"{self.root} is not a directory (symlinks are refused)")
        if layout.exists():
            try:
                version = go_loads(layout.read_bytes()).get("imageLayoutVersion")
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

    @functools.cached_property
    def ingest(self) -> Ingest:
        """The one way bytes become blobs of this store (see :mod:`.ingest`), shared by every
        transfer that writes into it."""
        return Ingest(self)

    @property
    def journal(self) -> Journal:
        """The index journal of gadgetstore's own store (a shared layout has none)."""
        if not isinstance(self.index, JournalIndex):
            raise StoreError(f"{self.root} is shared with another tool and keeps no index journal")
        return self.index.journal

    def index_json_source(self) -> tuple[jf.IndexState, int] | None:
        """The journal state and length our last index.json was written from (own store only)."""
        return self.index.index_json_source() if isinstance(self.index, JournalIndex) else None

    # -- locking and changing (:mod:`.tagindex`) -------------------------------------------------

    def lease(self) -> contextlib.AbstractContextManager[None]:
        """Held by writers from their first blob commit to their last tag, so gc cannot race them."""
        return self.locks.lease()

    def transaction(self, done: str = "the change was recorded") -> contextlib.AbstractContextManager[Transaction]:
        """Collect tag/pin operations and record them as one change (a journal record, or one
        rewrite of a shared layout's index.json)."""
        return self.index.transaction(done)

    def deferred_index_json(self) -> contextlib.AbstractContextManager[None]:
        """Transactions inside write index.json once, when the outermost block ends (a bulk pull)."""
        return self.index.deferred()

    def flush_index(self) -> None:
        """A shared layout: write what a deferred block has kept so far. Raises
        :class:`~.layoutindex.BlobsMissing` (keeping the changes) when blobs they name vanished."""
        self.index.flush()

    def abandon_index_changes(self) -> None:
        """A shared layout: forget what a deferred block kept after its flush failed for good."""
        self.index.discard_pending()

    def settled(self) -> contextlib.AbstractContextManager[None]:
        """The index lock held exclusively and the tags current: a view nobody changes meanwhile."""
        return self.index.settled()

    def refresh(self) -> None:
        self.index.refresh()

    def record_repair(self, ops: list[jf.Op]) -> None:
        """``fsck --repair``: record these removals and rewrite index.json (the caller holds the
        index lock): a journal record in gadgetstore's own store, an edit of a shared layout's."""
        self.index.record_repair(ops)

    def compact(self) -> None:
        """Rewrite the journal as a single snapshot (gc does this; it also happens automatically)."""
        self.index.compact()

    # -- reading (:mod:`.storeread`) -------------------------------------------------------------

    @property
    def state(self) -> jf.IndexState:
        """Tags (reference → descriptor JSON) and pins (digest → descriptor JSON); in a shared
        layout every untagged entry of index.json counts as a pin."""
        return self.index.state

    def generation(self) -> int:
        """Bring the tags up to date with the disk, and say which version of them this is: a
        number that changes whenever the tags or pins changed, in this process or another. Costs a
        stat or two when nothing changed, so a reader (the mount, serve) polls it and reloads only
        when it moved."""
        return self.index.generation()

    def tags(self) -> list[str]:
        return sorted(self.state.tags)

    def lookup(self, ref: str) -> Descriptor | None:
        return storeread.lookup(self.state, ref)

    def resolve(self, ref: str, shown_as: str | None = None) -> Descriptor:
        return storeread.resolve(self.state, ref, shown_as)

    def pins(self) -> list[Descriptor]:
        return storeread.pins(self.state)

    def roots(self, exclude_refs: Iterable[str] = ()) -> list[Descriptor]:
        return storeread.roots(self.state, exclude_refs)

    def read_document(self, desc: Descriptor) -> dict[str, Any]:
        return storeread.read_document(self.blobs, desc)

    def subject_of(self, desc: Descriptor) -> Digest | None:
        return storeread.subject_of(self.blobs, desc)

    def walk(self, roots: Iterable[Descriptor], missing_ok: bool = False) -> dict[Digest, Descriptor]:
        return storeread.walk(self.blobs, roots, missing_ok)

    def walk_image(self, root: Descriptor, where: str) -> dict[Digest, Descriptor]:
        return storeread.walk_image(self.blobs, root, where)

    def untagged_images(self, present_only: bool = True) -> list[Descriptor]:
        return storeread.untagged_images(self, present_only)

    # -- removing (:mod:`.removal`, :mod:`.garbage`) -----------------------------------------------

    def remove_image(self, ref: str, shown_as: str | None = None) -> bool:
        return removal.remove_image(self, ref, shown_as)

    def remove_untagged(self, digests: Iterable[Digest], grace: float | None = None) -> tuple[list[Digest], GcReport]:
        return removal.remove_untagged(self, digests, grace)

    def gc(self, grace: float | None = None) -> GcReport:
        return garbage.gc(self, grace)

    def discard(self, digests: set[Digest]) -> int:
        return garbage.discard(self, digests)


def _create_ig_layout(root: Path) -> None:
    """A new store where ig keeps its own, made as ig makes it: the directory 0700, then under the
    index lock ``blobs/``, ``oci-layout`` and an empty ``index.json`` (oras ``oci.New``)."""
    for directory in reversed(root.parents):  # MkdirAll(…, 0700): every directory it makes
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    ensure_durable_dir(root, 0o700)
    with StoreLocks(root / "index.json.lock", lease_dir=root / "ingest").exclusive():
        ensure_durable_dir(root / "blobs")
        if not (root / "oci-layout").exists():
            atomic_write(root / "oci-layout", OCI_LAYOUT_BYTES, 0o644)
        if not (root / "index.json").exists():
            atomic_write(root / "index.json", EMPTY_INDEX, 0o644)

