"""Disk access for the FUSE view. Every function here blocks and runs in a worker thread.

Blob-backed files are verified on their first open (and again if the blob file changed), not at
the end of a read: once bytes reach a reader they cannot be taken back, and with ``keep_cache``
the kernel may never ask for the tail again, so a late EIO would be both too late and unreliable.
The verifying read also warms the page cache for the reads that follow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.descriptor import Descriptor, checked_document
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import DigestMismatch, GadgetStoreError, IntegrityError, StoreError
from gadgetstore.engine.fsutil import open_regular
from gadgetstore.engine.imageinspect import image_extra_info
from gadgetstore.engine.images import ArchManifest, arch_manifests
from gadgetstore.engine.store import Store

from .blobfds import Identity, identity
from .catalog import MountCatalog
from .facts import (
    BlobListFact,
    BlobStat,
    BlobStatFact,
    DocFact,
    ExtraFact,
    Fact,
    ImageData,
    ImageFact,
    LoadFailed,
)
from .textfiles import extra_info_files

log = logging.getLogger(__name__)

VERIFY_CHUNK = 1024 * 1024


class StoreReader:
    """The store as the FUSE view reads it; safe to call from several worker threads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._journal_lock = threading.Lock()
        self._seen: int | None = None  # the store's generation of the last catalog
        self._verified: dict[Digest, Identity] = {}
        self._reported: set[Digest] = set()

    # -- the journal -------------------------------------------------------------------------------

    def snapshot(self) -> MountCatalog | None:
        """A new catalog when the store's tags or pins changed (its generation moved), else None."""
        with self._journal_lock:
            generation = self.store.generation()
            if generation == self._seen:
                return None
            self._seen = generation
            state = self.store.state
            tags, pins, times = dict(state.tags), dict(state.pins), dict(state.tag_times)
        return MountCatalog.build(tags, pins.values(), times)

    # -- facts -------------------------------------------------------------------------------------

    def load(self, fact: Fact) -> Any:
        """The value of one fact, or :class:`LoadFailed` carrying the error (never raises it)."""
        try:
            return self._load(fact)
        except GadgetStoreError as err:
            return LoadFailed(err)
        except OSError as err:
            return LoadFailed(StoreError(f"{err.strerror or err}: {err.filename or ''}"))
        except Exception as err:  # a bug in an analyser must cost one directory, not the mount
            log.exception("loading %r failed", fact)
            return LoadFailed(StoreError(f"internal error while reading the store: {err!r}"))

    def load_many(self, facts: list[Fact]) -> list[Any]:
        return [self.load(f) for f in facts]

    def _load(self, fact: Fact) -> Any:
        if isinstance(fact, ImageFact):
            root_doc = self.store.read_document(fact.root)
            st = self.store.blobs.stat(fact.root.digest)
            stored = st.st_mtime_ns if st is not None else None
            if fact.root.is_manifest and fact.root.architecture:
                # A per-arch manifest reached by digest keeps the architecture its index gave it.
                manifest = ArchManifest(fact.root.architecture, fact.root, root_doc)
                return ImageData.of(fact.root, root_doc, [manifest], stored)
            return ImageData.of(fact.root, root_doc, arch_manifests(self.store, fact.root), stored)
        if isinstance(fact, ExtraFact):
            return extra_info_files(image_extra_info(self.store, fact.typed, fact.manifest))
        if isinstance(fact, DocFact):
            return self._probe_document(fact.digest)
        if isinstance(fact, BlobStatFact):
            st = self.store.blobs.stat(fact.digest)
            return None if st is None else BlobStat(st.st_size, st.st_mtime_ns)
        if isinstance(fact, BlobListFact):
            return self._list_blobs(fact.algorithm)
        raise TypeError(f"unknown fact {fact!r}")

    def _probe_document(self, digest: Digest) -> Descriptor | None:
        st = self.store.blobs.stat(digest)
        if st is None or st.st_size > mt.MAX_MANIFEST_BYTES:
            return None
        try:
            _, media_type = checked_document(self.store.blobs.read(digest, max_size=mt.MAX_MANIFEST_BYTES),
                                             f"manifest {digest}")
        except GadgetStoreError:
            return None  # not a manifest or index that a pull or an import would take
        return Descriptor(media_type, digest, st.st_size)

    def _list_blobs(self, algorithm: str) -> Mapping[str, BlobStat]:
        out: dict[str, BlobStat] = {}
        with contextlib.suppress(FileNotFoundError), os.scandir(self.store.blobs.blobs_dir / algorithm) as it:
            for entry in it:
                try:
                    Digest.parse(f"{algorithm}:{entry.name}")
                    st = entry.stat(follow_symlinks=False)
                except (GadgetStoreError, FileNotFoundError):
                    continue
                if entry.is_file(follow_symlinks=False):
                    out[entry.name] = BlobStat(st.st_size, st.st_mtime_ns)
        return out

    # -- blob files --------------------------------------------------------------------------------

    def open_blob(self, digest: Digest, size: int) -> tuple[int, Identity]:
        """An fd of a verified blob of ``size`` bytes; raises IntegrityError/OSError otherwise."""
        fd = open_regular(self.store.blobs.path(digest))
        try:
            st = os.fstat(fd)
            ident = identity(st)
            if st.st_size != size:
                raise IntegrityError(f"blob {digest} is {st.st_size} bytes, expected {size}")
            if self._verified.get(digest) != ident:
                self._verify(fd, digest)
                self._verified[digest] = ident
        except BaseException:
            os.close(fd)
            raise
        return fd, ident

    def _verify(self, fd: int, digest: Digest) -> None:
        hasher = digest.hasher()
        offset = 0
        while chunk := os.pread(fd, VERIFY_CHUNK, offset):
            hasher.update(chunk)
            offset += len(chunk)
        if hasher.hexdigest() != digest.hex:
            self._verified.pop(digest, None)
            raise DigestMismatch(f"blob {digest} is damaged: its content has another digest")

    def report_once(self, digest: Digest, err: Exception) -> None:
        """Log a damaged blob once per mount rather than on every access."""
        if digest not in self._reported:
            self._reported.add(digest)
            log.error("serving EIO for %s: %s", digest, err)

