"""The signature-orphan rule: when an image goes, so do the signatures attached to it.

A signature is kept by a tag that names its subject (``sha256-<hex>.sig``, see
:func:`.reference.signature_tag_subject`) or by a pin whose manifest has a ``subject`` (a referrer).
Once nothing else keeps that subject alive, the signature is dropped in the same transaction as
the image, so no store is left with signatures of nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .descriptor import Descriptor
from .digest import Digest
from .reference import signature_tag_subject
from .tagindex import Transaction

if TYPE_CHECKING:
    from .store import Store


def drop_orphans(store: Store, txn: Transaction, removed_ref: str | None,
                 removed_roots: list[Descriptor]) -> list[Descriptor]:
    """Untag and unpin in ``txn`` the signatures whose subject nothing keeps alive once
    ``removed_ref`` (a tag; None when untagged images, the pins ``removed_roots``, are removed) is
    gone; returns them. In a shared layout also the untagged entries of the removed images' graphs
    that nothing else reaches (their per-arch manifests): ig's remove deletes those, and a referrer
    left pointing into them would make ig's gc loop for ever. One walk of the store, however many
    images go at once."""
    signature_refs = {r for r in store.state.tags if signature_tag_subject(r) is not None}
    referrers = pinned_referrer_digests(store)
    removed = {root.digest for root in removed_roots}
    graph = set(store.walk(removed_roots, missing_ok=True)) if store.shared else set()
    if removed_ref is None:
        graph |= removed
    gone = signature_refs if removed_ref is None else signature_refs | {removed_ref}
    image_roots = [d for d in store.roots(exclude_refs=gone) if d.digest not in referrers and d.digest not in graph]
    alive = set(store.walk(image_roots, missing_ok=True))
    dropped: list[Descriptor] = []
    for pin in store.pins():
        if (store.shared and pin.digest in graph and pin.digest not in alive and pin.digest not in referrers
                and pin.digest not in removed):
            txn.unpin(pin.digest)
    for sig_ref in sorted(signature_refs):
        target = signature_tag_subject(sig_ref)
        sig = store.lookup(sig_ref)
        if target is not None and target not in alive and sig is not None:
            txn.untag(sig_ref)
            dropped.append(sig)
    for pin in store.pins():
        subj = store.subject_of(pin)
        if subj is not None and subj not in alive:
            txn.unpin(pin.digest)
            dropped.append(pin)
    return dropped


def pinned_referrer_digests(store: Store) -> set[Digest]:
    return {pin.digest for pin in store.pins() if store.subject_of(pin) is not None}
