"""The one way bytes become blobs of a store: :class:`Ingest`, reached as ``store.ingest``.

Every producer hands its bytes here: a pull and its peers and signatures (:mod:`..registry`, which
moves them over the wire), an import (:mod:`..archive`), a build (:mod:`..build`), a signature
made here (:mod:`..signatures.sign`). Whatever the route, a blob is verified against its digest before its
name appears, its bytes are durable before it is renamed into ``blobs/``, and its name is durable
before anything (a tag) refers to it. The routes differ only in how the fsyncs are paid:

- one blob at a time (:meth:`Ingest.put`): its own fsync of the file and of its directory;
- in batches (:meth:`Ingest.put_batched`, :meth:`Ingest.publish`; :mod:`.batched`): what arrives
  while one batch is made durable goes into the next, one ``syncfs`` for all of it;
- sealed files published together (:meth:`Ingest.publish_sealed`): the transaction that tags
  them syncs ``blobs/`` once;
- a big download in Range chunks (:meth:`Ingest.ranged`; :mod:`.ranged`): ``O_DIRECT``, its own
  fsync, and a partial file a later pull resumes from (:mod:`.resume`).

Tags are written by the store's transactions only; a pull's image tags go through
:meth:`Ingest.tag_image` (:mod:`.tags`), which groups them into one transaction (the signatures
it brought are recorded before, one record each: :mod:`..registry.signatures.settle`). One
:class:`Ingest` per store, however many transfers run: a bulk pull's images and the pulls of a
mount share its batches. The batching parts need trio and are made on first use, so opening a
store does not load it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ..blobstore import IngestWriter
from ..descriptor import Descriptor
from ..digest import Digest
from .ranged import RangedIngest

if TYPE_CHECKING:
    import trio

    from ..store import Store
    from .batched import BatchedPublisher
    from .tags import ImageTags


class Ingest:
    """Bytes into one store's blobs, and pulled images into its tags."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._blobs = store.blobs

    # -- blocking: one blob, or sealed files the next transaction makes durable --------------------

    def put(self, data: bytes, expected: Digest | None = None) -> Digest:
        """Store ``data`` (once: a blob already there is not written again), durable and visible
        on return; returns its digest. Refused when it is not ``expected``."""
        return self._blobs.put(data, expected)

    def writer(self, expected: Digest, size: int) -> IngestWriter:
        """An ingest file for a blob whose bytes come in pieces (an archive member, a streamed
        download). Seal it, then hand it to :meth:`publish` or :meth:`publish_sealed`; abort it
        otherwise."""
        return self._blobs.writer(expected, size)

    def publish_sealed(self, writer: IngestWriter) -> None:
        """Rename a sealed (fsync'd) file into ``blobs/``; the directory is synced by the
        transaction that next tags something (it syncs ``blobs/`` before its record)."""
        writer.publish(sync_dir=False)

    def ranged(self, desc: Descriptor) -> RangedIngest:
        """The ingest file of a big blob fetched in Range chunks (see :mod:`.ranged`)."""
        return RangedIngest(self._blobs, desc)

    # -- async: batched with whatever else arrives meanwhile ---------------------------------------

    @functools.cached_property
    def batches(self) -> BatchedPublisher:
        from .batched import BatchedPublisher

        return BatchedPublisher(self._blobs)

    async def put_batched(self, data: bytes | bytearray, digest: Digest) -> None:
        """:meth:`put` in the next batch; returns once the blob is durable and visible."""
        await self.batches.put(data, digest)

    async def publish(self, writer: IngestWriter) -> None:
        """Make a file sealed without its fsync (``seal(sync=False)``) durable and visible in the
        next batch; on failure it is removed."""
        await self.batches.publish(writer)

    @functools.cached_property
    def image_tags(self) -> ImageTags:
        from .tags import ImageTags

        return ImageTags(self._store)

    async def tag_image(self, tag: str | None, desc: Descriptor) -> None:
        """Tag an image whose blobs are all in (with ``tag`` None: pin it, untagged), in the next
        transaction of a batch; returns once it is recorded."""
        await self.image_tags.record(tag, desc)

    @property
    def tag_lock(self) -> trio.Lock:
        """Held while tags are recorded; a task that reads or records tags in a worker thread
        meanwhile (a pull's signatures) holds it too."""
        return self.image_tags.lock
