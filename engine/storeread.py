"""Reading what a store holds: its tags and pins, the documents in its blobs, and their graphs.

Nothing here writes or locks: the tags come from the store's current state (``store.state``, kept
by :mod:`.journalindex` or :mod:`.layoutindex`), documents and graphs from its blobs. The
:class:`~.store.Store` methods of the same names call these.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import journal_format as jf
from . import mediatypes as mt
from .blobstore import BlobNotFound, BlobStore
from .descriptor import Descriptor, GraphBudget, children, is_document, parse_document, subject, walk_graph
from .digest import Digest
from .errors import GadgetStoreError, ImageNotFound, IntegrityError, StoreError
from .layoutindex import IndexPlan

if TYPE_CHECKING:
    from .store import Store


# -- tags and pins ---------------------------------------------------------------------------------


def lookup(state: jf.IndexState, ref: str) -> Descriptor | None:
    raw = state.tags.get(ref)
    return None if raw is None else Descriptor.from_json(raw, f"tag {ref}")


def resolve(state: jf.IndexState, ref: str, shown_as: str | None = None) -> Descriptor:
    desc = lookup(state, ref)
    if desc is None:
        raise ImageNotFound(f"image {shown_as or ref!r} not found in the store")
    return desc


def pins(state: jf.IndexState) -> list[Descriptor]:
    return [Descriptor.from_json(raw, "pin") for raw in state.pins.values()]


def roots(state: jf.IndexState, exclude_refs: Iterable[str] = ()) -> list[Descriptor]:
    """What keeps blobs alive: every tag (but ``exclude_refs``) and every pin."""
    skip = set(exclude_refs)
    out = [Descriptor.from_json(raw, ref) for ref, raw in state.tags.items() if ref not in skip]
    return out + pins(state)


# -- documents and graphs --------------------------------------------------------------------------


def read_document(blobs: BlobStore, desc: Descriptor) -> dict[str, Any]:
    data = blobs.read(desc.digest, max_size=mt.MAX_MANIFEST_BYTES)
    if len(data) != desc.size:
        raise StoreError(f"blob {desc.digest} is {len(data)} bytes, its descriptor says {desc.size}")
    return parse_document(data, f"manifest {desc.digest}")


def subject_of(blobs: BlobStore, desc: Descriptor) -> Digest | None:
    """The digest a referrer (a signature, say) is attached to; None for anything else."""
    if not is_document(desc):
        return None
    try:
        subj = subject(read_document(blobs, desc), f"manifest {desc.digest}")
    except GadgetStoreError:
        return None
    return subj.digest if subj else None


def walk(blobs: BlobStore, roots: Iterable[Descriptor], missing_ok: bool = False) -> dict[Digest, Descriptor]:
    """Every descriptor reachable from ``roots`` (roots included), keyed by digest.

    Not bounded like one image (see :func:`walk_image`): a walk of the whole store (gc, remove)
    must reach everything a tag keeps alive, and each blob is visited once.
    """
    return walk_graph(roots, functools.partial(_children, blobs, missing_ok))


def walk_image(blobs: BlobStore, root: Descriptor, where: str) -> dict[Digest, Descriptor]:
    """What :func:`walk` gives for one image, within the bounds of :class:`GraphBudget` (the ones
    a pull checks); ``where`` names the image in the error."""
    return walk_graph([root], functools.partial(_children, blobs, False), budget=GraphBudget(where, root))


def _children(blobs: BlobStore, missing_ok: bool, desc: Descriptor) -> list[Descriptor]:
    if not is_document(desc):
        return []
    try:
        doc = read_document(blobs, desc)
    except BlobNotFound:
        if missing_ok:
            return []
        raise
    return children(doc, f"manifest {desc.digest}")


def untagged_images(store: Store, present_only: bool = True) -> list[Descriptor]:
    """Images no tag names: pins that are no signature (an untagged build), and no tag and no
    other of them reaches. In a shared layout that leaves out the untagged entries ig writes for
    the per-arch manifests of every image, tagged or not. ``present_only`` leaves out entries
    whose blob is gone (what ig's gc leaves behind); a digest lookup still finds them."""
    tagged = [Descriptor.from_json(raw, ref) for ref, raw in store.state.tags.items()]
    candidates = [pin for pin in store.pins()
                  if is_document(pin) and (not present_only or store.blobs.has(pin.digest))
                  and store.subject_of(pin) is None]
    reached = set(store.walk(tagged, missing_ok=True))
    for pin in candidates:
        reached |= set(store.walk([pin], missing_ok=True)) - {pin.digest}
    return [pin for pin in candidates if pin.digest not in reached]


# -- before a shared layout's index.json names new roots -------------------------------------------


def index_plan(blobs: BlobStore, roots: list[Descriptor]) -> IndexPlan:
    """Before ``roots`` are named in a shared layout's index.json (under its lock): the blobs of
    their graphs that are missing, and the manifests and indexes below each root. A blob of the
    wrong size, or a manifest that is damaged, is an error: naming it would break every ig command."""
    plan = IndexPlan()
    examined: dict[Digest, list[Descriptor]] = {}
    missing: dict[Digest, Descriptor] = {}

    def expand(desc: Descriptor) -> list[Descriptor]:
        if desc.digest not in examined:
            examined[desc.digest] = _present_children(blobs, desc, missing)
        return examined[desc.digest]

    for root in roots:
        walked = walk_graph([root], expand)
        plan.below[root.digest] = [d for d in walked.values() if d.digest != root.digest and is_document(d)]
    plan.missing = list(missing.values())
    return plan


def _present_children(blobs: BlobStore, desc: Descriptor, missing: dict[Digest, Descriptor]) -> list[Descriptor]:
    st = blobs.stat(desc.digest)
    if st is None:
        missing[desc.digest] = desc
        return []
    if st.st_size != desc.size:
        raise IntegrityError(f"blob {desc.digest} has {st.st_size} bytes, its descriptor says {desc.size}")
    if not is_document(desc):
        return []
    try:
        return children(read_document(blobs, desc), f"manifest {desc.digest}")
    except BlobNotFound:
        missing[desc.digest] = desc
        return []
