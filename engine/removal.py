"""Removing images: by tag (:func:`remove_image`), untagged ones (:func:`remove_untagged`), by any
reference as ``image remove`` takes it (:func:`remove_reference`), and all untagged ones
(``gc --untagged``, :func:`prune_untagged`).

Removing an image drops, in the same transaction, the signatures attached to it (:mod:`.orphans`),
then deletes the blobs nothing else reaches (:func:`.garbage.collect`).

A name (``name``, ``name:tag``) removes that tag as :func:`remove_image` does. A digest
(``sha256:…``, a prefix, ``name@sha256:…``) removes the image with that digest, as ``docker rmi``
does with an image ID: an untagged image is deleted; an image with one tag loses it (and its blobs
when nothing else uses them); an image with several tags is refused, naming them, so one command
never drops more names than the user can see. With ``name@digest`` only the tags of that
repository count, and with ``name:tag@digest`` that tag when it points at the digest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import reference
from .descriptor import Descriptor
from .digest import Digest
from .errors import AmbiguousReference, ImageNotFound, IndexJsonBehind
from .garbage import GcReport, collect
from .orphans import drop_orphans
from .resolve import resolve

if TYPE_CHECKING:
    from .store import Store


def remove_image(store: Store, ref: str, shown_as: str | None = None) -> bool:
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
    with store.locks.collecting():
        try:
            with store.transaction(f"{shown} was untagged") as txn:
                desc = store.resolve(ref, shown_as)
                shared = any(
                    other != ref and raw.get("digest") == str(desc.digest)
                    for other, raw in store.state.tags.items()
                )
                txn.untag(ref)
                if not shared:
                    dropped = [desc, *drop_orphans(store, txn, ref, [desc])]
        except IndexJsonBehind:
            if shared:
                raise
        if shared:
            return False
        removed = set(store.walk(dropped, missing_ok=True)) if store.shared else set()
        collect(store, f"{shown} was removed", removed=removed)
        return True


def remove_untagged(store: Store, digests: Iterable[Digest], grace: float | None = None
                    ) -> tuple[list[Digest], GcReport]:
    """Remove the untagged images among ``digests`` (see :func:`.storeread.untagged_images`): each
    one's entry, the entries below it and the signatures of it that nothing else needs; then their
    blobs, in one collection. Returns the images removed (none changes nothing) and the report.

    One transaction for them all: which images are untagged, and what they leave orphaned, is
    worked out once, under the index lock, so an image tagged meanwhile is not among them and the
    cost is one walk of the store whatever their number."""
    wanted = sorted(set(digests), key=str)
    if not wanted:
        return [], GcReport()
    with store.locks.collecting():
        with store.transaction(_removed_message(wanted)) as txn:
            untagged = {image.digest: image for image in store.untagged_images()}
            roots = [untagged[digest] for digest in wanted if digest in untagged]
            if not roots:
                return [], GcReport()
            for root in roots:
                txn.unpin(root.digest)
            dropped = [*roots, *drop_orphans(store, txn, None, roots)]
        removed = set(store.walk(dropped, missing_ok=True)) if store.shared else set()
        removed_images = [root.digest for root in roots]
        return removed_images, collect(store, _removed_message(removed_images), grace, removed=removed)


def _removed_message(images: list[Digest]) -> str:
    """What a removal of the untagged ``images`` (one or more) says it did."""
    return f"{images[0]} was removed" if len(images) == 1 else "untagged images were removed"


def remove_reference(store: Store, text: str) -> None:
    """Remove what ``text`` names; raises ImageNotFound or AmbiguousReference and changes nothing then."""
    found = resolve(store, text)
    if found.via_tag is not None:
        store.remove_image(found.via_tag, shown_as=text)
        return
    tags = list(found.tags)
    if found.reference is not None:
        in_repo = [t for t in tags if reference.parse(t).repository == found.reference.repository]
        if tags and not in_repo:
            raise ImageNotFound(
                f"image {text!r}: {found.digest} is not tagged in {found.reference.repository} "
                f"(it is tagged {', '.join(tags)}); remove one of those, or give {found.digest}"
            )
        tags = in_repo
        named = f"{found.reference.repository}:{found.reference.tag}" if found.reference.tag else None
        if named in tags:
            tags = [named]  # name:tag@digest: that tag, when it is one of the digest's
    if len(tags) > 1:
        raise AmbiguousReference(
            f"image {text!r} is tagged {len(tags)} times ({', '.join(tags)}); remove the tags one by one"
        )
    if tags:
        store.remove_image(tags[0], shown_as=text)
    if any(pin.digest == found.digest for pin in store.pins()):
        store.remove_untagged([found.digest])


def prune_untagged(store: Store, grace: float | None = None) -> tuple[int, GcReport]:
    """Delete every untagged image (not signatures) and what only they reach; (images removed, gc report)."""
    removed, report = store.remove_untagged((image.digest for image in store.untagged_images()), grace)
    if not removed:
        report = store.gc(grace)
    return len(removed), report
