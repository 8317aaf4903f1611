"""``image remove`` by any reference, and pruning untagged images (``gc --untagged``).

A name (``name``, ``name:tag``) removes that tag as :meth:`Store.remove_image` does. A digest
(``sha256:…``, a prefix, ``name@sha256:…``) removes the image with that digest, as ``docker rmi``
does with an image ID: an untagged image is deleted; an image with one tag loses it (and its blobs
when nothing else uses them); an image with several tags is refused, naming them, so one command
never drops more names than the user can see. With ``name@digest`` only the tags of that
repository count, and with ``name:tag@digest`` that tag when it points at the digest.
"""

from __future__ import annotations

from . import reference
from .errors import AmbiguousReference, ImageNotFound
from .resolve import resolve
from .store import GcReport, Store


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
