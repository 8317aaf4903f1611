"""Settling fetched signatures: recorded in the store, then verified when a policy asks, before the tag.

The signatures are recorded (tags / pins, one journal record each) *before* the image tag, under the
pull's shared lease. Verification reads them from the store, and the tag must come only after a
verdict; the lease keeps ``gc``/``remove`` from dropping them in between. When verification refuses
the image its records are undone and, once the batch has released its lease, the blobs nothing else
reaches are deleted under the exclusive lease (a targeted gc, :func:`discard_refused`). A crash
between the two leaves signature records of an untagged digest (harmless; ``remove`` of another
image drops such orphans). ``--verify`` checks cosign signatures only (notation: no).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import trio

from ...descriptor import Descriptor
from ...digest import Digest
from ...errors import GadgetStoreError
from ...signatures.errors import SignatureError
from ...signatures.locate import record_pulled_signature, signature_artifacts
from ...store import Store
from .fetch import FetchedSignature, SignatureFetch
from .policy import VerifyPolicy


class SignatureRefused(SignatureError):
    """``pull --verify`` (or the store policy) refused the image; ``discard`` are its blobs to delete."""

    def __init__(self, message: str, discard: frozenset[Digest] = frozenset()) -> None:
        super().__init__(message)
        self.discard = discard


@dataclass
class SignatureOutcome:
    count: int
    warnings: list[str]


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
                    done: _Recorded, policy: VerifyPolicy) -> None:
    """Blocking: the verdict; on refusal, undo the records and name every blob the pull brought."""
    from ...signatures.verify import verify_cosign  # loads cryptography: only when a signature is checked

    try:
        verify_cosign(store, ref, root.digest, policy.public_keys())
    except SignatureError as err:
        graph = store.walk([root, *(sig.desc for sig in found)], missing_ok=True)
        _undo(store, done)
        raise SignatureRefused(f"signature verification failed ({policy.source}), image not tagged: {err}",
                               frozenset(graph)) from None


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
                await trio.to_thread.run_sync(
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
            from ...signatures.verify import verify_cosign

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
