"""Pulling into a store shared with ig: blobs first, then one index.json write under ig's lock,
after checking that every blob is still there (ig's ``image remove`` deletes, without its lock,
every blob index.json does not name: pkg/oci/oci.go deleteGadgetImage → oras Store.GC)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.layoutindex import BlobsMissing
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_images
from gadgetstore.engine.store import Store
from tests.support.igstore import CAPTURED_REF, captured_store, ig_list, tree
from tests.support.images import make_gadget_image
from tests.support.registry import RegistryServer, unique_repo


def insecure(server: RegistryServer) -> TransferOptions:
    return TransferOptions(insecure_registries=frozenset({server.host}))


async def published(registry: RegistryServer, tmp_path: Path, count: int) -> list[str]:
    from gadgetstore.engine.registry.push import push_image

    src = Store.open(tmp_path / "src")
    images = [registry.ref(unique_repo("shared"), f"v{i}") for i in range(count)]
    for image in images:
        make_gadget_image(src, image, seed=image)
        await push_image(src, image, insecure(registry))
    return images


async def test_blobs_a_gc_deleted_before_the_tags_are_fetched_again(anon_registry: RegistryServer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    images = await published(anon_registry, tmp_path, 2)
    root = captured_store(tmp_path / "oci-store").root
    store = Store.open(root)
    real_flush = store.flush_index
    deleted: list[Digest] = []

    def another_tools_gc_first() -> None:
        if not deleted:  # what ig's gc does to blobs index.json does not name yet
            pending = store.lookup(images[0])  # this process sees its tags before index.json has them
            assert pending is not None and Store.open(root, readonly=True).lookup(images[0]) is None
            for desc in store.walk([pending]).values():
                store.blobs.path(desc.digest).unlink()
                deleted.append(desc.digest)
        real_flush()

    monkeypatch.setattr(store, "flush_index", another_tools_gc_first)
    results = await pull_images(store, images, insecure(anon_registry))
    assert [r.error for r in results] == [None, None]
    assert len(deleted) == 6 and all(store.blobs.has(digest) for digest in deleted)
    listed = {":".join(row.split()[:2]) for row in ig_list(root).splitlines()[1:]}
    assert listed == {"127.0.0.1:55841/x:v1", *images}


@pytest.mark.leaves_damaged_store
async def test_a_pull_whose_blobs_keep_vanishing_tags_nothing(anon_registry: RegistryServer, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (image,) = await published(anon_registry, tmp_path, 1)
    root = captured_store(tmp_path / "oci-store").root
    store = Store.open(root)
    real_flush = store.flush_index
    index_before = (root / "index.json").read_bytes()

    def always_gone() -> None:
        for path in (root / "blobs" / "sha256").iterdir():
            if path.name not in (root / "index.json").read_text():
                path.unlink()  # everything not named yet, every time
        real_flush()

    monkeypatch.setattr(store, "flush_index", always_gone)
    (result,) = await pull_images(store, [image], insecure(anon_registry))
    assert isinstance(result.error, BlobsMissing)
    assert str(result.error).endswith("nothing was tagged: pull or import again")
    assert (root / "index.json").read_bytes() == index_before
    assert Store.open(root, readonly=True).tags() == [CAPTURED_REF]
    before = tree(root)
    Store.open(root).gc()
    assert tree(root) == before
