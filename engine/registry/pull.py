"""Pulling images into the store: resolve, fetch what is missing, then tag.

The graph is walked top-down, level by level: the root (by tag or digest), then per-arch manifests,
then configs and layers, each distinct digest once and within the bounds of
:class:`~gadgetstore.engine.descriptor.GraphBudget`. A blob already in the store is skipped without
any request; a manifest or blob two images share is downloaded once (the second waits on the
first). The shared lease is held from before the first commit until the tag is written, so ``gc``
never removes a committed but untagged blob.
The image's signatures are fetched alongside its graph and recorded (and, when asked, verified)
just before the tag: see :mod:`.signatures`. A re-pull whose tag still names the digest the store
has for it costs that one request: its signatures were settled when the digest was pulled (with a
verify policy, the stored ones are checked first, and looked up again only when they do not verify).

Into a layout shared with ig, the batch's tags are written to index.json once, at the end, under
ig's lock, and only after checking under that lock that every blob they reach is still there:
ig's ``image remove`` deletes every blob index.json does not name, including the ones this pull
has just fetched. What vanished is fetched again (:meth:`Puller.refetch`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from .. import mediatypes as mt
from ..descriptor import Descriptor, GraphBudget, checked_document, children, is_document
from ..digest import Digest
from ..errors import GadgetStoreError, InvalidManifest, StoreError
from ..layoutindex import BlobsMissing
from ..reference import Reference, normalize
from ..store import Store
from .client import RegistryClient, Session, TransferOptions
from .manifests import VerifiedManifest
from .mirrors import Sources, Tallies
from .signatures import (
    ReferrersApi,
    SignatureFetch,
    VerifyPolicy,
    discard_refused,
    settle_signatures,
    stored_signatures,
)
from .tagsnapshot import TagSnapshots
from .tasks import task_group

MAX_IMAGES_WITH_PEERS = 4096
INDEX_ATTEMPTS = 3  # into a shared layout: how often blobs that vanished before the tags are fetched again


@dataclass
class PullResult:
    image: str  # as typed
    reference: str = ""  # str(normalize(image)): the tag written, or name@digest for an untagged pull
    descriptor: Descriptor | None = None
    blobs_fetched: int = 0
    bytes_fetched: int = 0
    error: GadgetStoreError | None = None
    sources: Tallies = field(default_factory=dict)  # bytes per source (upstream, each mirror)
    signatures: int = 0  # signature manifests stored with the image (see .signatures)
    warnings: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """``<repo>:<tag>@<digest>`` as ig prints after ``Successfully pulled``."""
        ref = normalize(self.image)
        name = ref.repository + (f":{ref.tag}" if ref.tag else "")
        return f"{name}@{self.descriptor.digest if self.descriptor else ''}"


@dataclass
class _Stats:
    blobs: int = 0
    bytes: int = 0
    sources: Tallies = field(default_factory=dict)


@dataclass
class _Shared:
    """State shared by the pulls of one batch: who is downloading what (blobs and documents alike)."""

    inflight: dict[Digest, trio.Event] = field(default_factory=dict)
    fetched: set[Digest] = field(default_factory=set)  # in the store now: a later plan may predate that
    stored: frozenset[str] | None = None  # sha256 blob names when the batch began (None: not listed)

    def maybe_present(self, digest: Digest) -> bool:
        """False only when ``digest`` was not in the store when the batch began and has not been
        fetched since: it is fetched without a look-up (one that came meanwhile from elsewhere is
        found when its fetch publishes it). A listed one is looked up: it may have gone since (ig's
        ``image remove`` in a shared layout deletes blobs without our lease)."""
        if self.stored is None or digest.algorithm != "sha256":
            return True
        return digest.hex in self.stored or digest in self.fetched


class Puller:
    """Pull images through one :class:`Session` into one store."""

    def __init__(self, store: Store, session: Session, policy: VerifyPolicy | None = None,
                 on_bytes: Callable[[int], None] | None = None, images: Sequence[str] = (),
                 tagged: dict[str, Digest] | None = None, stored: frozenset[str] | None = None) -> None:
        self.store = store
        self.on_bytes = on_bytes  # called on the event loop as bytes arrive (a progress display)
        self.session = session
        self.policy = policy
        self.options = session.options
        self._shared = _Shared(stored=stored)
        # Blobs and tags go to the store's ingest, in batches with whatever else arrives meanwhile;
        # an image's tag is handed over only once all of its blobs are in.
        self._ingest = store.ingest
        self._sources = Sources(session)  # mirrors first, as the session's registries config says
        self._referrers_api = ReferrersApi()  # which registries have the Referrers API
        self._tagged = tagged or {}  # what the batch's tags named in the store when it began
        self._tag_snapshots = TagSnapshots(_repositories(images))  # signature tags: one listing per repo
        self._pulled: list[tuple[RegistryClient, str, VerifiedManifest, _Stats]] = []  # what refetch walks again

    async def pull(self, image: str) -> PullResult:
        """Pull one image and tag it; raises on failure (nothing is tagged then)."""
        ref = normalize(image)
        client = await self.session.client(ref.domain)
        stats = _Stats()
        root = await self._root(client, ref, stats)
        tag = str(ref)
        if self._tagged.get(tag) == root.desc.digest:
            stored = await stored_signatures(self.store, tag, root.desc, self.policy, self._ingest.tag_lock)
            if stored is not None:  # settled when this digest was pulled: no lookup
                await self._graph(client, ref.path, root, stats)  # nothing missing: no request
                await self._ingest.tag_image(tag, root.desc)
                self._pulled.append((client, ref.path, root, stats))
                return PullResult(image, tag, root.desc, stats.blobs, stats.bytes, sources=stats.sources,
                                  signatures=stored)
        signatures = SignatureFetch(self.store, client, ref.path, root.desc, self.session.blob_limiter,
                                    self._referrers_api, self._sources,  # same sources as the image
                                    self._tag_snapshots)
        async with task_group() as nursery:
            nursery.start_soon(self._graph, client, ref.path, root, stats)
            nursery.start_soon(signatures.run)
        # recorded (and verified) before the tag, under the batch's lease: see .signatures
        outcome = await settle_signatures(self.store, tag, root.desc, signatures, self.policy,
                                          self._ingest.tag_lock)  # one journal user at a time in this batch
        # a pull by digest names no tag: the image is kept untagged (``name@sha256:…`` is no tag)
        await self._ingest.tag_image(tag if ref.digest is None else None, root.desc)
        self._pulled.append((client, ref.path, root, stats))
        return PullResult(image, tag, root.desc, stats.blobs, stats.bytes, sources=stats.sources,
                          signatures=outcome.count, warnings=outcome.warnings)

    async def refetch(self, missing: Sequence[Descriptor]) -> None:
        """Fetch again the blobs and manifests of pulled images that are no longer in the store."""
        gone = {desc.digest for desc in missing}
        self._shared.fetched -= gone

        async def refill(client: RegistryClient, repo: str, root: VerifiedManifest, stats: _Stats) -> None:
            if root.desc.digest in gone:
                await self._save_document(root, stats)
            await self._graph(client, repo, root, stats)

        async with task_group() as nursery:
            for client, repo, root, stats in self._pulled:
                nursery.start_soon(refill, client, repo, root, stats)

    async def _root(self, client: RegistryClient, ref: Reference, stats: _Stats) -> VerifiedManifest:
        if ref.digest is not None:
            return await self._document(client, ref.path, ref.digest, f"{ref}", stats)
        doc = await self._sources.document(client, ref.path, ref.tag_or_latest, None, f"{ref}", stats.sources)
        await self._save_document(doc, stats)
        return doc

    async def _local_document(self, digest: Digest, desc: Descriptor | None) -> VerifiedManifest | None:
        """A manifest we already have, read and re-verified off the event loop."""
        return await trio.to_thread.run_sync(self._read_local, digest, desc)

    def _read_local(self, digest: Digest, desc: Descriptor | None) -> VerifiedManifest | None:
        if not self.store.blobs.has(digest):
            return None
        data = self.store.blobs.read(digest, max_size=mt.MAX_MANIFEST_BYTES)
        if desc is not None and desc.size != len(data):
            raise InvalidManifest(f"manifest {digest} is {len(data)} bytes, its descriptor says {desc.size}")
        declared = desc.media_type if desc else ""
        doc, media_type = checked_document(data, f"manifest {digest}", expected_type=declared)
        return VerifiedManifest(Descriptor(media_type, digest, len(data)), data, doc)

    async def _save_document(self, doc: VerifiedManifest, stats: _Stats) -> None:
        await self._ingest.put_batched(doc.data, doc.desc.digest)
        stats.blobs += 1
        stats.bytes += len(doc.data)
        if self.on_bytes:
            self.on_bytes(len(doc.data))

    async def _graph(self, client: RegistryClient, repo: str, root: VerifiedManifest, stats: _Stats) -> None:
        """Everything under ``root`` that the store lacks: the documents level by level, each once,
        within the image's :class:`GraphBudget`; then the plain blobs, all at once.

        No blob is fetched before the whole graph is known to be within bounds; a warm re-pull of an
        ig image costs the root's request and one thread hop per level. A level none of whose
        digests was in the store when the batch began (a cold pull) is sorted without one.
        """
        budget = GraphBudget("image graph", root.desc)
        blobs: dict[Digest, Descriptor] = {}
        frontier = [root]
        level = 0
        while frontier:
            level += 1
            kids = [kid for doc in frontier for kid in budget.admit(children(doc.doc, f"manifest {doc.desc.digest}"),
                                                                    level)]
            if any(self._shared.maybe_present(kid.digest) for kid in kids):
                frontier, missing = await trio.to_thread.run_sync(self._expand, kids, blobs)
            else:
                frontier, missing = [], [kid for kid in kids if is_document(kid)]
                blobs.update((kid.digest, kid) for kid in kids if not is_document(kid))
            fetched: dict[int, VerifiedManifest] = {}
            async with task_group() as nursery:
                for i, desc in enumerate(missing):
                    nursery.start_soon(self._fetch_into, fetched, i, client, repo, desc, stats)
            frontier.extend(fetched[i] for i in range(len(missing)))  # in document order, however they came
        async with task_group() as nursery:
            for desc in blobs.values():
                nursery.start_soon(self._blob, client, repo, desc, stats)

    def _expand(self, kids: list[Descriptor], blobs: dict[Digest, Descriptor]
                ) -> tuple[list[VerifiedManifest], list[Descriptor]]:
        """Blocking: the documents among ``kids`` that the store has (read) and the ones to fetch;
        plain blobs still missing go into ``blobs``."""
        local: list[VerifiedManifest] = []
        missing: list[Descriptor] = []
        for kid in kids:
            if is_document(kid):
                found = self._read_local(kid.digest, kid)
                if found is None:
                    missing.append(kid)
                else:
                    local.append(found)
            elif not self.store.blobs.has(kid.digest):
                blobs[kid.digest] = kid
        return local, missing

    async def _fetch_into(self, out: dict[int, VerifiedManifest], i: int, client: RegistryClient, repo: str,
                          desc: Descriptor, stats: _Stats) -> None:
        out[i] = await self._document(client, repo, desc, f"manifest {desc.digest}", stats)

    async def _document(self, client: RegistryClient, repo: str, expected: Descriptor | Digest, where: str,
                        stats: _Stats) -> VerifiedManifest:
        """A manifest or index by digest, fetched at most once per batch: while another image fetches
        it, this one waits and then reads it from the store."""
        digest = expected.digest if isinstance(expected, Descriptor) else expected
        desc = expected if isinstance(expected, Descriptor) else None
        inflight, fetched = self._shared.inflight, self._shared.fetched
        while (event := inflight.get(digest)) is not None:
            await event.wait()  # done, or failed (then try ourselves)
        if desc is None or digest in fetched:  # a root by digest may be in the store already
            local = await self._local_document(digest, desc)
            if local is not None:
                return local
        event = inflight[digest] = trio.Event()
        try:
            doc = await self._sources.document(client, repo, str(digest), expected, where, stats.sources)
            await self._save_document(doc, stats)
            fetched.add(digest)
        finally:
            del inflight[digest]
            event.set()
        return doc

    async def _blob(self, client: RegistryClient, repo: str, desc: Descriptor, stats: _Stats) -> None:
        inflight, fetched = self._shared.inflight, self._shared.fetched
        while (event := inflight.get(desc.digest)) is not None:
            await event.wait()  # another image's fetch of it: done, or failed (then try ourselves)
        if desc.digest in fetched:
            return
        event = inflight[desc.digest] = trio.Event()
        try:
            # Outside the download budget: waiting on a peer's pull must not hold back the blobs this
            # node owns, which that peer (or another) may be waiting for in turn.
            received = await self._sources.from_peers(self.store, client, repo, desc, stats.sources)
            if received is None:
                async with self.session.blob_limiter:
                    received = await self._sources.blob(self.store, client, repo, desc, stats.sources)
            fetched.add(desc.digest)
            stats.blobs += 1
            stats.bytes += received
            if self.on_bytes:
                self.on_bytes(received)
        finally:
            del inflight[desc.digest]
            event.set()


def _repositories(images: Sequence[str]) -> list[tuple[str, str]]:
    """(registry, repository) of each well-formed reference; a malformed one fails on its own later."""
    repos = []
    for image in images:
        try:
            ref = normalize(image)
        except GadgetStoreError:
            continue
        repos.append((ref.domain, ref.path))
    return repos


def _tagged(store: Store, images: Sequence[str]) -> dict[str, Digest]:
    """Blocking: the digest each well-formed reference's tag names in the store now."""
    out: dict[str, Digest] = {}
    for image in images:
        try:
            tag = str(normalize(image))
        except GadgetStoreError:
            continue
        desc = store.lookup(tag)
        if desc is not None:
            out[tag] = desc.digest
    return out


def image_slots(options: TransferOptions, count: int) -> int:
    """Images pulled at once. With peers, all of them: a node must find (and fetch) every blob it owns
    without waiting for an image slot, since a slot may be held by an image that waits on a peer's
    blob, and that peer may wait on ours; downloads are still bounded by the blob budget and pool.
    """
    peers = options.registries.peers if options.registries is not None else None
    wanted = max(1, options.max_concurrent_images)
    return max(wanted, min(count, MAX_IMAGES_WITH_PEERS)) if peers is not None else wanted


async def pull_images(
    store: Store,
    images: Sequence[str],
    options: TransferOptions | None = None,
    *,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[PullResult], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    verify: VerifyPolicy | None = None,
) -> list[PullResult]:
    """Pull many images concurrently into ``store``; one result per image, in input order.

    A failed image carries its ``error``; the others still complete. ``on_start``/``on_done``
    are called from the event loop as each image begins and ends, ``on_bytes`` as data arrives
    (for progress messages).
    ``verify`` refuses to tag an image whose signature does not verify; its blobs are then deleted.
    """
    options = options or TransferOptions()
    results = [PullResult(image) for image in images]
    limit = trio.Semaphore(image_slots(options, len(images)))
    lease = contextlib.ExitStack()
    # In a shared layout nothing is tagged before the batch's one index.json write: report then.
    report_now = on_done if not store.shared else None

    tagged: dict[str, Digest] = {}

    def begin() -> frozenset[str]:
        lease.enter_context(store.lease())
        lease.enter_context(store.deferred_index_json())  # one index.json write, under the lease, at the end
        store.refresh()
        tagged.update(_tagged(store, images))
        return store.blobs.names("sha256")

    stored = await trio.to_thread.run_sync(begin)
    try:
        async with Session(options) as session:
            puller = Puller(store, session, verify, on_bytes, images, tagged, stored)

            async def one(i: int) -> None:
                async with limit:
                    if on_start:
                        on_start(images[i])
                    try:
                        results[i] = await puller.pull(images[i])
                    except GadgetStoreError as err:
                        results[i].error = err
                    except OSError as err:  # e.g. a full disk: this image fails, the others go on
                        results[i].error = StoreError(f"{err.strerror or err}" + (
                            f": {err.filename}" if err.filename else ""))
                    if report_now:
                        report_now(results[i])

            async with task_group() as nursery:
                for i in range(len(images)):
                    nursery.start_soon(one, i)
            if store.shared:
                await _index_shared_layout(store, puller, results)
    finally:
        with trio.CancelScope(shield=True):  # also when cancelled: bring index.json up, drop the lease
            try:
                await trio.to_thread.run_sync(lease.close)
            except StoreError as err:  # the journal has every tag; index.json is rewritten on next open
                for result in results:
                    result.warnings.append(str(err))
    await discard_refused(store, (r.error for r in results))  # needs the exclusive lease: after ours
    if on_done and not report_now:
        for result in results:
            on_done(result)
    return results


async def _index_shared_layout(store: Store, puller: Puller, results: list[PullResult]) -> None:
    """Write the batch's tags into a shared layout's index.json, fetching again (a few times) what
    vanished before they could be; when that keeps failing, no image of the batch is tagged."""
    for attempt in range(INDEX_ATTEMPTS):
        try:
            await trio.to_thread.run_sync(store.flush_index)
            return
        except BlobsMissing as err:
            if attempt + 1 == INDEX_ATTEMPTS:
                await trio.to_thread.run_sync(store.abandon_index_changes)
                for result in results:
                    if result.error is None:
                        result.error = err
                return
            try:
                await puller.refetch(err.missing)
            except (GadgetStoreError, OSError):
                continue  # the next flush names what is still missing


async def pull_image(store: Store, image: str, options: TransferOptions | None = None, *,
                     verify: VerifyPolicy | None = None) -> PullResult:
    """Pull one image; raises its error instead of returning it."""
    (result,) = await pull_images(store, [image], options, verify=verify)
    if result.error is not None:
        raise result.error
    return result
