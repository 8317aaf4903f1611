"""engine/removal.py: image remove by reference, and pruning untagged images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _reads_to_prune(store: Store, monkeypatch: pytest.MonkeyPatch, untagged: int) -> int:
    """Blob reads (documents) that pruning ``untagged`` untagged images beside two tagged ones takes."""
    for n in range(2):
        make_gadget_image(store, f"x.io/kept{n}:v1", layer_size=100)
    for n in range(untagged):
        make_gadget_image(store, f"x.io/gone{n}:v1", layer_size=100, untagged=True)
    reads = 0
    read = store.blobs.read

    def counting_read(*args: Any, **kwargs: Any) -> bytes:
        nonlocal reads
        reads += 1
        return read(*args, **kwargs)

    monkeypatch.setattr(store.blobs, "read", counting_read)
    assert prune_untagged(store)[0] == untagged
    monkeypatch.undo()
    assert len(store.tags()) == 2 and store.pins() == []
    return reads


def test_pruning_untagged_images_reads_the_store_once_not_once_per_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gc --untagged over twice the images costs about twice the reads, not four times."""
    few = _reads_to_prune(Store.open(tmp_path / "few"), monkeypatch, 8)
    many = _reads_to_prune(Store.open(tmp_path / "many"), monkeypatch, 16)
    assert many <= 2.2 * few, (few, many)


def test_an_image_tagged_after_it_was_listed_is_not_removed(store: Store, store_root: Path) -> None:
    """gc --untagged lists the untagged images first; one that another command tags before the
    removal takes the index lock keeps its tag and its blobs."""
    kept = make_gadget_image(store, "x.io/kept:v1", untagged=True)
    gone = make_gadget_image(store, "x.io/gone:v1", seed="gone", untagged=True)
    listed = [image.digest for image in store.untagged_images()]
    with Store.open(store_root).transaction() as txn:  # another process
        txn.tag("x.io/kept:v2", kept)
    removed, _ = store.remove_untagged(listed)
    assert removed == [gone.digest]
    assert store.tags() == ["x.io/kept:v2"] and store.pins() == [kept]
    assert sorted(store.blobs.iter_digests()) == sorted(store.walk([kept]))
