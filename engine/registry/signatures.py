"""Signatures on the wire: ``pull`` brings an image's signatures along, ``push`` sends them back.

Pull looks, concurrently with the image graph, in the image's own repository for cosign's legacy
tag ``sha256-<hex>.sig`` and for referrers of the root digest: the OCI 1.1 Referrers API, or the
``sha256-<hex>`` referrers-tag index when the registry has no such API (distribution 2.8 answers
404). Only referrers of :data:`SIGNATURE_ARTIFACT_TYPES` (cosign OCI 1.1, Sigstore bundle, notation)
are kept. Unlike ig (first format wins) every format found is stored, so a later offline
``verify`` can use whichever one the trusted key made. A missing signature is not an error; a
signature that cannot be fetched is a warning, never a failed pull. Referrers found through a
referrers-tag index are pinned one by one rather than keeping that index: it may list other
artifacts (SBOMs, …) whose blobs are not fetched, and a tagged index must reach only present blobs.
All of it goes through the pull's mirror :class:`~.mirrors.Sources`, as the image does (see
:class:`SignatureFetch`); in a batch, one tag listing per repository can answer that a signature
tag is absent (:mod:`.tagsnapshot`).

Ordering: the signatures are recorded (tags / pins, one journal record each) *before* the image
tag, under the pull's shared lease. Verification reads them from the store, and the tag must come
only after a verdict; the lease keeps ``gc``/``remove`` from dropping them in between. When
verification refuses the image its records are undone and, once the batch has released its
lease, the blobs nothing else reaches are deleted under the exclusive lease (a targeted gc).
A crash between the two leaves signature records of an untagged digest (harmless; ``remove`` of
another image drops such orphans). ``--verify`` checks cosign signatures only (notation: no).

Push sends the stored signatures after the image: the legacy tag under the same repository,
referrers by digest (a registry with the Referrers API links them through ``subject`` and says so
with ``OCI-Subject``); when a registry does not confirm that, the ``sha256-<hex>`` referrers-tag
index is fetched, merged and put back, as the distribution spec asks of clients.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .. import mediatypes as mt
from ..descriptor import Descriptor, canonical_json, children, is_document, parse_document, subject
from ..digest import Digest
from ..errors import GadgetStoreError, InvalidManifest
from ..reference import legacy_signature_tag, referrers_tag
from ..signatures import constants as sc
from ..signatures.errors import SignatureError
from ..signatures.locate import artifact_type_of, record_pulled_signature, signature_artifacts
from ..store import Store
from .blobfetch import BlobFetcher
from .client import RegistryClient
from .errors import NotFoundInRegistry, RegistryError
from .manifests import Document, fetch_document
from .mirrors import Sources, Tallies
from .paging import follow_next, next_link
from .tagsnapshot import TagSnapshots

if TYPE_CHECKING:  # keys and verification load cryptography: only when a signature is checked
    from ..signatures.keys import PublicKey
    from ..signatures.verify import VerifyResult

POLICY_FILE = "policy.json"
MAX_REFERRERS = 16  # signature referrers fetched per image: a hostile listing cannot make us fetch more
MAX_REFERRER_PAGES = 8
MAX_SIGNATURE_BLOB = 1024 * 1024  # what the verifier reads at most (signatures.encoding)
MAX_SIGNATURE_CHILDREN = 8
_API_MISSING = (400, 404, 405)  # the Referrers API is absent: fall back to the referrers tag
BlobPusher = Callable[[Descriptor], Awaitable[None]]
T = TypeVar("T")


class PolicyError(GadgetStoreError):
    pass


class SignatureRefused(SignatureError):
    """``pull --verify`` (or the store policy) refused the image; ``discard`` are its blobs to delete."""

    def __init__(self, message: str, discard: frozenset[Digest] = frozenset()) -> None:
        super().__init__(message)
        self.discard = discard


# -- policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyPolicy:
    """Verify pulled images with these cosign keys (``None``: Inspektor Gadget's key) before tagging."""

    keys: tuple[PublicKey, ...] | None = None
    source: str = "--verify"

    def public_keys(self) -> list[PublicKey]:
        from ..signatures.keys import default_public_keys

        return default_public_keys() if self.keys is None else list(self.keys)


def load_policy(store_root: Path) -> VerifyPolicy | None:
    """``<store>/policy.json``: ``{"verify": true, "publicKeys": ["<PEM>", …]}``; None when off or absent.

    A store-wide setting so an air-gapped store can never gain an unverified image by a forgotten flag.
    """
    path = store_root / POLICY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise PolicyError(f"cannot read store policy {path}: {err.strerror or err}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise PolicyError(f"store policy {path} is not valid JSON ({err})") from None
    if not isinstance(doc, dict) or set(doc) - {"verify", "publicKeys"}:
        raise PolicyError(f'store policy {path} must be an object with only "verify" and "publicKeys"')
    verify = doc.get("verify", False)
    pems = doc.get("publicKeys")
    if not isinstance(verify, bool):
        raise PolicyError(f'store policy {path}: "verify" must be true or false')
    if pems is not None and (not isinstance(pems, list) or not all(isinstance(p, str) for p in pems)):
        raise PolicyError(f'store policy {path}: "publicKeys" must be a list of PEM strings')
    if not verify:
        return None
    from ..signatures.keys import load_public_keys

    keys = None if pems is None else tuple(load_public_keys(pems))
    if keys is not None and not keys:
        raise PolicyError(f'store policy {path}: "publicKeys" is empty; nothing could ever verify')
    return VerifyPolicy(keys, f"store policy {path}")


# -- pull --------------------------------------------------------------------------------------


class ReferrersApi:
    """Per batch: which registries have the Referrers API. The first image to ask a registry finds
    out while the batch's other images wait for its answer, so a registry without the API gets one
    probe per batch, not one per image in flight; one whose answer is not usable is not asked again."""

    def __init__(self) -> None:
        self._has: dict[str, bool] = {}
        self._probing: dict[str, trio.Lock] = {}

    async def listing(self, domain: str, ask: Callable[[], Awaitable[list[Descriptor] | None]]
                      ) -> list[Descriptor] | None:
        """``ask()``'s answer (None: no usable API), or None without asking once the registry is known to lack it."""
        if domain not in self._has:
            async with self._probing.setdefault(domain, trio.Lock()):
                if domain not in self._has:
                    answer = await ask()
                    self._has[domain] = answer is not None
                    return answer
        if not self._has[domain]:
            return None
        answer = await ask()
        if answer is None:
            self._has[domain] = False
        return answer


@dataclass(frozen=True)
class FetchedSignature:
    """A signature whose blobs are in the store: tagged (``sha256-<hex>.sig``) or, with tag None, pinned."""

    desc: Descriptor
    tag: str | None


@dataclass
class SignatureFetch:
    """Fetch the signatures of ``subject`` from ``repo`` into the store's blobs (nothing recorded yet).

    The lookups go through ``sources`` like the image does: the signature tags and the referrers
    listing are tag lookups, so ``resolve = true`` mirrors are asked first, in order, then the
    upstream; manifests and blobs by digest try every mirror, then the upstream, all verified. A
    mirror's "none here" (404, or an empty listing) moves on to the next source, unless that mirror
    holds the image itself (its manifest, digest-verified): then it has answered for the image's
    signatures as it answers for its tags, and the upstream is not asked (no upstream traffic, and
    no retries against an unreachable upstream in an air-gapped pull). Without ``sources`` only
    ``client`` is asked.
    """

    store: Store
    client: RegistryClient
    repo: str
    subject: Descriptor
    limiter: trio.CapacityLimiter
    referrers_api: ReferrersApi = field(default_factory=lambda: ReferrersApi())  # shared by a batch
    sources: Sources | None = None
    tag_snapshots: TagSnapshots | None = None  # shared by a batch: tags listed once per repository
    found: list[FetchedSignature] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tallies: Tallies = field(default_factory=dict)  # per source; not part of the image's own tallies
    _has_subject: dict[str, bool] = field(default_factory=dict)  # per mirror
    _subject_lock: trio.Lock = field(default_factory=trio.Lock)

    @property
    def scopes(self) -> tuple[str, ...]:
        return (f"repository:{self.repo}:pull",)

    async def run(self) -> None:
        """Both lookups at once; a registry that fails one only costs a warning."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._guarded, self._legacy, "cosign signature tag")
            nursery.start_soon(self._guarded, self._referrers, "signature referrers")

    async def _guarded(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        try:
            await step()
        except GadgetStoreError as err:
            self.warnings.append(f"could not fetch the {what} of {self.subject.digest}: {err}")

    async def _lookup(self, step: Callable[[RegistryClient], Awaitable[T]], empty: T) -> T:
        """``step`` at each source that may answer a tag, first answer wins; ``empty`` when none has it."""
        if self.sources is None:
            try:
                return await step(self.client)
            except NotFoundInRegistry:
                return empty

        async def attempt(client: RegistryClient) -> tuple[T, int]:
            try:
                return await step(client), 0
            except NotFoundInRegistry:
                if client.endpoint.is_mirror and await self._mirror_has_subject(client):
                    return empty, 0  # the mirror holds the image: it has answered for its signatures
                raise

        try:
            return await self.sources.first(self.client, True, self.tallies, attempt)
        except NotFoundInRegistry:
            return empty

    async def _mirror_has_subject(self, client: RegistryClient) -> bool:
        """Whether the mirror serves the image's own manifest (verified against its digest); asked once."""
        async with self._subject_lock:
            known = self._has_subject.get(client.domain)
            if known is None:
                try:
                    await fetch_document(client, self.repo, str(self.subject.digest), self.subject.bare(),
                                         f"manifest {self.subject.digest}")
                    known = True
                except NotFoundInRegistry:
                    known = False
                self._has_subject[client.domain] = known
            return known

    async def _document(self, listed: Descriptor, where: str) -> Document:
        if self.sources is None:
            return await fetch_document(self.client, self.repo, str(listed.digest), listed, where)
        return await self.sources.document(self.client, self.repo, str(listed.digest), listed, where, self.tallies)

    async def _legacy(self) -> None:
        tag = legacy_signature_tag(self.subject.digest)

        async def step(client: RegistryClient) -> Document | None:
            return await self._tagged_document(client, tag)

        doc = await self._lookup(step, None)
        if doc is None:
            return
        await self._save(doc)
        self.found.append(FetchedSignature(doc.desc.bare(), tag))

    async def _referrers(self) -> None:
        """The API, else the referrers tag; a registry without the API is not asked again in this batch."""
        none: list[Descriptor] = []
        listing = await self._lookup(self._listing, none)
        wanted = [d for d in listing if d.extra.get("artifactType") in sc.SIGNATURE_ARTIFACT_TYPES]
        unique = list({d.digest: d for d in wanted}.values())
        if len(unique) > MAX_REFERRERS:
            self.warnings.append(f"{len(unique)} signature referrers listed for {self.subject.digest}; "
                                 f"fetching the first {MAX_REFERRERS}")
        async with trio.open_nursery() as nursery:
            for desc in unique[:MAX_REFERRERS]:
                nursery.start_soon(self._guarded, partial(self._referrer, desc), f"referrer {desc.digest}")

    async def _listing(self, client: RegistryClient) -> list[Descriptor]:
        """One source's referrers of the subject; NotFoundInRegistry when it has no index, or is a
        mirror that lists no signature among them (an empty answer: the next source may have some).

        A mirror's answer is not remembered for the batch: its 404 may only mean that it lacks this
        repository, while it serves the API for the next image.
        """
        if client.endpoint.is_mirror:
            listing = await self._referrers_api(client)
        else:
            listing = await self.referrers_api.listing(client.domain, partial(self._referrers_api, client))
        if listing is None:
            tag = referrers_tag(self.subject.digest)
            index = await self._tagged_document(client, tag)
            if not index.desc.is_index:
                raise InvalidManifest(f"referrers tag {tag} is not an index")
            listing = _entries(index.doc.get("manifests"), "referrers tag index")
        if client.endpoint.is_mirror and not any(
                d.extra.get("artifactType") in sc.SIGNATURE_ARTIFACT_TYPES for d in listing):
            raise NotFoundInRegistry(f"{client.domain}: no signature referrers of {self.subject.digest}")
        return listing

    async def _tagged_document(self, client: RegistryClient, tag: str) -> Document:
        """The manifest ``tag`` names; NotFoundInRegistry without a request when the batch's
        listing of the repository shows no such tag."""
        if self.tag_snapshots is not None and await self.tag_snapshots.lacks(client, self.repo, tag):
            raise NotFoundInRegistry(f"{client.domain}: {self.repo}:{tag} is not among the repository's tags")
        return await fetch_document(client, self.repo, tag, None, f"{self.repo}:{tag}")

    async def _referrers_api(self, client: RegistryClient) -> list[Descriptor] | None:
        """The Referrers API listing (all pages), or None when the registry does not have the API."""
        out: list[Descriptor] = []
        path = f"/v2/{self.repo}/referrers/{self.subject.digest}"
        url = client.url(path)
        read = {url}
        for _ in range(MAX_REFERRER_PAGES):
            resp = await client.request("GET", url, scopes=self.scopes, ok=(200, *_API_MISSING),
                                        headers=[("Accept", mt.OCI_INDEX)], what=f"referrers of {path}")
            async with resp:
                if resp.status != 200:
                    await resp.discard()
                    return out or None
                data = await resp.read(mt.MAX_MANIFEST_BYTES)
                links = resp.header_all("link")
            try:
                doc = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                return None  # a 200 that is not JSON: some front end, not the API
            if not isinstance(doc, dict):
                return None
            out.extend(_entries(doc.get("manifests"), "referrers listing"))
            following = next_link(links, url)
            if following is None:
                return out
            url = follow_next(following, client.origin, read, f"referrers of {path}")
        return out

    async def _referrer(self, listed: Descriptor) -> None:
        where = f"signature referrer {listed.digest}"
        doc = await self._document(listed.bare(), where)
        subj = subject(doc.doc, where)
        if subj is None or subj.digest != self.subject.digest:
            raise InvalidManifest(f"{where}: its subject is not {self.subject.digest}")
        kind = artifact_type_of(doc.doc)
        if kind not in sc.SIGNATURE_ARTIFACT_TYPES:
            raise InvalidManifest(f"{where}: artifact type {kind or 'none'} is not a signature type")
        await self._save(doc)
        self.found.append(FetchedSignature(Descriptor(doc.desc.media_type, doc.desc.digest, doc.desc.size,
                                                      {"artifactType": kind}), None))

    async def _save(self, doc: Document) -> None:
        """A signature manifest's config and layers, then the manifest: small, flat, verified."""
        where = f"signature manifest {doc.desc.digest}"
        if not doc.desc.is_manifest:
            raise InvalidManifest(f"{where} is an index, not a signature manifest")
        kids = children(doc.doc, where)
        if len(kids) > MAX_SIGNATURE_CHILDREN:
            raise InvalidManifest(f"{where} has {len(kids)} blobs; a signature has a few")
        for kid in kids:
            if is_document(kid) or kid.size > MAX_SIGNATURE_BLOB:
                raise InvalidManifest(f"{where}: blob {kid.digest} ({kid.media_type}, {kid.size} bytes) "
                                      "is not what a signature holds")
        for kid in kids:
            if not await trio.to_thread.run_sync(self.store.blobs.has, kid.digest):
                async with self.limiter:
                    if self.sources is None:
                        await BlobFetcher(self.store, self.client).fetch(self.repo, kid)
                    else:
                        await self.sources.blob(self.store, self.client, self.repo, kid, self.tallies)
        await trio.to_thread.run_sync(self.store.blobs.put, doc.data, doc.desc.digest)


def _entries(items: object, where: str) -> list[Descriptor]:
    if not isinstance(items, list):
        raise InvalidManifest(f"{where} has no manifests list")
    return [Descriptor.from_json(item, f"{where} manifests[{i}]") for i, item in enumerate(items)]


@dataclass
class _Recorded:
    """What recording changed, so a refusal can put the journal back as it was."""

    tags: dict[str, Descriptor | None] = field(default_factory=dict)  # tag -> its previous target
    pins: list[Digest] = field(default_factory=list)  # newly pinned
    unchanged: int = 0  # recorded, but already pinned before


def _record(store: Store, found: Sequence[FetchedSignature], warnings: list[str]) -> _Recorded:
    """Blocking: tag or pin each fetched signature (the caller holds the store's lease)."""
    store.refresh()
    done = _Recorded()
    pinned = {pin.digest for pin in store.pins()}
    for sig in found:
        previous = store.lookup(sig.tag) if sig.tag is not None else None
        if (previous is not None and previous.digest == sig.desc.digest) or (
                sig.tag is None and sig.desc.digest in pinned):
            done.unchanged += 1  # a warm re-pull appends nothing to the journal
            continue
        try:
            record_pulled_signature(store, sig.desc, sig.tag)
        except GadgetStoreError as err:
            warnings.append(f"could not keep signature {sig.desc.digest}: {err}")
            continue
        if sig.tag is not None:
            done.tags.setdefault(sig.tag, previous)
        else:
            done.pins.append(sig.desc.digest)
            pinned.add(sig.desc.digest)
    return done


def _undo(store: Store, done: _Recorded) -> None:
    with store.transaction() as txn:
        for tag, previous in done.tags.items():
            if previous is None:
                txn.untag(tag)
            else:
                txn.tag(tag, previous)
        for digest in done.pins:
            txn.unpin(digest)


def _verify_or_undo(store: Store, ref: str, root: Descriptor, found: Sequence[FetchedSignature],
                    done: _Recorded, policy: VerifyPolicy) -> VerifyResult:
    """Blocking: the verdict; on refusal, undo the records and name every blob the pull brought."""
    from ..signatures.verify import verify_cosign

    try:
        return verify_cosign(store, ref, root.digest, policy.public_keys())
    except SignatureError as err:
        graph = store.walk([root, *(sig.desc for sig in found)], missing_ok=True)
        _undo(store, done)
        raise SignatureRefused(f"signature verification failed ({policy.source}), image not tagged: {err}",
                               frozenset(graph)) from None


@dataclass
class SignatureOutcome:
    count: int
    warnings: list[str]
    verified: VerifyResult | None = None


async def settle_signatures(store: Store, ref: str, root: Descriptor, fetch: SignatureFetch,
                            policy: VerifyPolicy | None, journal_lock: trio.Lock) -> SignatureOutcome:
    """Record what ``fetch`` found, then verify when ``policy`` asks; raises SignatureRefused.

    ``journal_lock`` is the one the batch's tag commits hold: the store's in-memory journal state
    is not safe to read in one thread while another thread appends to it.
    """
    warnings = list(fetch.warnings)
    if not fetch.found and policy is None:
        return SignatureOutcome(0, warnings)  # unsigned: no thread hop, no lock
    async with journal_lock:
        done = await trio.to_thread.run_sync(_record, store, list(fetch.found), warnings)
        outcome = SignatureOutcome(len(done.tags) + len(done.pins) + done.unchanged, warnings)
        if policy is not None:
            try:
                outcome.verified = await trio.to_thread.run_sync(
                    _verify_or_undo, store, ref, root, list(fetch.found), done, policy)
            except SignatureRefused as err:
                if not warnings:
                    raise
                # the cause may be a lookup that failed: say so in the same line
                raise SignatureRefused(f"{err} (also: {'; '.join(warnings)})", err.discard) from None
    return outcome


async def stored_signatures(store: Store, ref: str, root: Descriptor, policy: VerifyPolicy | None,
                            journal_lock: trio.Lock) -> int | None:
    """How many signatures of ``root`` the store holds, or None when ``policy`` asks for a
    verification they do not pass (no request either way)."""
    def count() -> int | None:
        store.refresh()
        if policy is not None:
            from ..signatures.verify import verify_cosign

            try:
                verify_cosign(store, ref, root.digest, policy.public_keys())
            except GadgetStoreError:
                return None
        return len(signature_artifacts(store, root.digest))

    async with journal_lock:
        return await trio.to_thread.run_sync(count)


async def discard_refused(store: Store, errors: Iterable[BaseException | None]) -> int:
    """After a batch released its lease: delete the blobs of images a signature check refused."""
    digests: set[Digest] = set()
    for err in errors:
        if isinstance(err, SignatureRefused):
            digests |= err.discard
    if not digests:
        return 0
    try:
        return await trio.to_thread.run_sync(store.discard, digests)
    except GadgetStoreError:  # a damaged store graph: keep everything, ``gc``/``fsck`` will say why
        return 0


# -- push --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Artifact:
    """One signature to send: its documents bottom-up (top last), plain blobs, and how to name the top."""

    docs: tuple[tuple[Descriptor, bytes], ...]
    blobs: tuple[Descriptor, ...]
    tag: str | None  # the legacy tag; None: a referrer, put by digest
    listing: Descriptor | None = None  # for referrers: its entry in a referrers index


def _listing_entry(desc: Descriptor, doc: dict[str, Any]) -> Descriptor:
    """A referrer as the Referrers API lists it: artifactType and the manifest's annotations."""
    extra: dict[str, Any] = {"artifactType": artifact_type_of(doc)}
    annotations = doc.get("annotations")
    if isinstance(annotations, dict) and annotations:
        extra["annotations"] = annotations
    return Descriptor(desc.media_type, desc.digest, desc.size, extra)


def _flat_artifact(store: Store, desc: Descriptor, tag: str | None) -> _Artifact:
    data = store.blobs.read(desc.digest, max_size=mt.MAX_MANIFEST_BYTES)
    doc = parse_document(data, f"signature {desc.digest}")
    kids = children(doc, f"signature {desc.digest}")
    if any(is_document(kid) for kid in kids):
        raise InvalidManifest(f"signature {desc.digest} nests manifests; only flat signatures are pushed")
    listing = _listing_entry(desc.bare(), doc) if tag is None else None
    return _Artifact(((desc.bare(), data),), tuple(kids), tag, listing)


def plan_signature_push(store: Store, digest: Digest) -> list[_Artifact]:
    """Blocking: what to push for the image ``digest``; a referrers-tag index is unpacked into referrers."""
    out: list[_Artifact] = []
    seen: set[Digest] = set()
    for artifact in signature_artifacts(store, digest):
        if artifact.tag == referrers_tag(digest):
            index = parse_document(store.blobs.read(artifact.desc.digest, max_size=mt.MAX_MANIFEST_BYTES),
                                   f"referrers index {artifact.tag}")
            entries = [e for e in _entries(index.get("manifests"), f"referrers index {artifact.tag}")
                       if store.blobs.has(e.digest)]
            items: list[tuple[Descriptor, str | None]] = [(e, None) for e in entries]
        else:
            items = [(artifact.desc, artifact.tag)]
        for desc, tag in items:
            if desc.digest not in seen:
                seen.add(desc.digest)
                out.append(_flat_artifact(store, desc, tag))
    return out


async def _put_manifest(client: RegistryClient, repo: str, desc: Descriptor, data: bytes, reference: str
                        ) -> bool:
    """PUT one document; True when the registry confirmed a ``subject`` link (``OCI-Subject``)."""
    resp = await client.request(
        "PUT", f"/v2/{repo}/manifests/{reference}", scopes=(f"repository:{repo}:pull,push",), ok=(201,),
        body=data, headers=[("Content-Type", desc.media_type)], what=f"pushing signature {desc.digest}",
    )
    linked = resp.header("oci-subject") is not None
    await resp.discard()
    return linked


async def _update_referrers_tag(client: RegistryClient, repo: str, digest: Digest,
                                entries: Sequence[Descriptor]) -> None:
    """Merge ``entries`` into the registry's ``sha256-<hex>`` index, as spec'd for registries without the API."""
    tag = referrers_tag(digest)
    try:
        current = await fetch_document(client, repo, tag, None, f"{repo}:{tag}")
    except NotFoundInRegistry:
        current = None
    listed: list[dict[str, Any]] = []
    if current is not None:
        if not current.desc.is_index:
            raise RegistryError(f"{repo}:{tag} exists but is not a referrers index; not overwriting it")
        manifests = current.doc.get("manifests")
        listed = [m for m in manifests if isinstance(m, dict)] if isinstance(manifests, list) else []
    known = {m.get("digest") for m in listed}
    added = [e.to_json() for e in entries if str(e.digest) not in known]
    if not added:
        return
    data = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [*listed, *added]})
    index = Descriptor(mt.OCI_INDEX, Digest.of_bytes(data), len(data))
    await _put_manifest(client, repo, index, data, tag)


async def push_signatures(store: Store, client: RegistryClient, repo: str, digest: Digest,
                          push_blob: BlobPusher, limiter: trio.CapacityLimiter) -> int:
    """Push every stored signature of the image ``digest`` into ``repo``; returns how many.

    ``push_blob`` is the image pusher's (HEAD, mount or upload); the image itself must be pushed first.
    """
    artifacts = await trio.to_thread.run_sync(plan_signature_push, store, digest)
    unlinked: list[Descriptor] = []
    for artifact in artifacts:
        async with trio.open_nursery() as nursery:
            for blob in artifact.blobs:
                nursery.start_soon(_limited_blob, push_blob, blob, limiter)
        for desc, data in artifact.docs[:-1]:
            await _put_manifest(client, repo, desc, data, str(desc.digest))
        top, data = artifact.docs[-1]
        linked = await _put_manifest(client, repo, top, data, artifact.tag or str(top.digest))
        if artifact.listing is not None and not linked:
            unlinked.append(artifact.listing)
    if unlinked:
        await _update_referrers_tag(client, repo, digest, unlinked)
    return len(artifacts)


async def _limited_blob(push_blob: BlobPusher, blob: Descriptor, limiter: trio.CapacityLimiter) -> None:
    async with limiter:
        await push_blob(blob)
