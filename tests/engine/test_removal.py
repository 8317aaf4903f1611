"""engine/removal.py: image remove by reference, and pruning untagged images."""

from __future__ import annotations

import pytest

from gadgetstore.engine.errors import AmbiguousReference, ImageNotFound
from gadgetstore.engine.removal import prune_untagged, remove_reference
from gadgetstore.engine.store import Store
from tests.support.images import make_gadget_image


def test_a_digest_that_is_tagged_and_pinned_goes_entirely(store: Store) -> None:
    """A pull by digest pins the image; a later pull by tag tags it too: removing the digest drops both."""
    root = make_gadget_image(store, "x.io/app:v1")
    with store.transaction() as txn:
        txn.pin(root)
    remove_reference(store, str(root.digest))
    assert store.tags() == [] and store.pins() == []
    assert list(store.blobs.iter_digests()) == []


def test_refusals_change_nothing(store: Store) -> None:
    root = make_gadget_image(store, "x.io/app:v1")
    with store.transaction() as txn:
        txn.tag("x.io/app:v2", root)
    blobs = sorted(store.blobs.iter_digests())
    with pytest.raises(AmbiguousReference, match=r"tagged 2 times \(x.io/app:v1, x.io/app:v2\)"):
        remove_reference(store, str(root.digest))
    with pytest.raises(ImageNotFound, match=r"is not tagged in y\.io/other"):
        remove_reference(store, f"y.io/other@{root.digest}")
    with pytest.raises(ImageNotFound, match="not found in the store"):
        remove_reference(store, "sha256:" + "0" * 64)
    assert store.tags() == ["x.io/app:v1", "x.io/app:v2"] and sorted(store.blobs.iter_digests()) == blobs
    remove_reference(store, f"x.io/app:v1@{root.digest}")
    assert store.tags() == ["x.io/app:v2"], "name:tag@digest picks that tag among the digest's"
    assert sorted(store.blobs.iter_digests()) == blobs, "still tagged: only untagged"


def test_prune_untagged_keeps_tagged_images_and_what_they_share(store: Store) -> None:
    shared = b"\x7fELF shared layer"
    kept = make_gadget_image(store, "x.io/kept:v1", shared_layer=shared)
    make_gadget_image(store, "x.io/gone:v1", seed="gone", shared_layer=shared, untagged=True)
    count, report = prune_untagged(store)
    assert count == 1 and report.removed_blobs
    assert sorted(store.blobs.iter_digests()) == sorted(store.walk([kept]))
    assert prune_untagged(store)[0] == 0
