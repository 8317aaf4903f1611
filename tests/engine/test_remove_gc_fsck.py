import json
import os
import threading
import time
from pathlib import Path

from gadgetstore.engine.archive import import_archive
from gadgetstore.engine.descriptor import Descriptor, canonical_json
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.fsck import fsck
from gadgetstore.engine.store import Store

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def put_json(store: Store, obj: dict, media_type: str) -> Descriptor:  # type: ignore[type-arg]
    data = canonical_json(obj)
    return Descriptor(media_type, store.blobs.put(data), len(data))


def make_image(store: Store, ref: str, layers: list[bytes]) -> Descriptor:
    """A one-arch gadget-like image: index → manifest → config + layers."""
    config = store.blobs.put(b"name: x\n")
    layer_descs = [{"mediaType": "application/vnd.gadget.ebpf.program.v1+binary",
                    "digest": str(store.blobs.put(data)), "size": len(data)} for data in layers]
    manifest = put_json(store, {"schemaVersion": 2, "config": {"mediaType": "application/vnd.gadget.config.v1+yaml",
                        "digest": str(config), "size": 8}, "layers": layer_descs}, MANIFEST)
    entry = {**manifest.to_json(), "platform": {"architecture": "amd64", "os": "linux"}}
    index = put_json(store, {"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]}, INDEX)
    with store.transaction() as txn:
        txn.tag(ref, index)
    return index


def sign(store: Store, subject: Descriptor, ref_style: bool) -> Descriptor:
    sig = put_json(store, {"schemaVersion": 2, "mediaType": MANIFEST, "config": {
        "mediaType": "application/vnd.oci.empty.v1+json", "digest": str(store.blobs.put(b"{}")), "size": 2},
        "layers": [], "subject": subject.to_json()}, MANIFEST)
    with store.transaction() as txn:
        if ref_style:
            txn.tag(f"sha256-{subject.digest.hex}.sig", sig)
        else:
            txn.pin(sig)
    return sig


def test_remove_shared_digest_only_untags(store: Store, gadget_tar: Path) -> None:
    (image,) = import_archive(store, gadget_tar)
    with store.transaction() as txn:
        txn.tag("x.io/copy:1", store.resolve(image))
    blobs_before = set(store.blobs.iter_digests())
    assert store.remove_image(image) is False
    assert store.tags() == ["x.io/copy:1"]
    assert set(store.blobs.iter_digests()) == blobs_before


def test_remove_deletes_image_and_signatures_but_shared_blobs_survive(store: Store) -> None:
    shared_layer = b"shared ELF" * 100
    a = make_image(store, "x.io/a:1", [shared_layer, b"only in a"])
    b = make_image(store, "x.io/b:1", [shared_layer, b"only in b"])
    sig_tag = sign(store, a, ref_style=True)
    sig_pin = sign(store, a, ref_style=False)
    sign(store, b, ref_style=True)
    assert store.remove_image("x.io/a:1") is True
    remaining = set(store.blobs.iter_digests())
    assert a.digest not in remaining and sig_tag.digest not in remaining and sig_pin.digest not in remaining
    assert Digest.of_bytes(b"only in a") not in remaining
    assert Digest.of_bytes(shared_layer) in remaining and Digest.of_bytes(b"only in b") in remaining
    assert store.tags() == [f"sha256-{b.digest.hex}.sig", "x.io/b:1"]
    assert store.pins() == []
    assert fsck(store).clean


def test_gc_removes_unreachable_blobs_and_stale_ingest_files(store: Store) -> None:
    keep = make_image(store, "x.io/keep:1", [b"keep me"])
    orphan = store.blobs.put(b"orphan")
    (store.blobs.ingest_dir / "ingest-leftover").write_bytes(b"partial")
    report = store.gc()
    assert report.removed_blobs == [orphan]
    assert report.removed_ingest_files == 1
    assert keep.digest in set(store.blobs.iter_digests())
    assert fsck(store).clean


def test_gc_waits_for_a_writer_holding_the_lease(store: Store) -> None:
    """A blob committed but not yet tagged must survive a concurrent gc."""
    gc_done = threading.Event()
    with store.lease():
        digest = store.blobs.put(b"committed, tag pending")
        worker = threading.Thread(target=lambda: (Store.open(store.root).gc(), gc_done.set()))
        worker.start()
        time.sleep(0.3)
        assert not gc_done.is_set(), "gc must wait for the writer's lease"
        with store.transaction() as txn:
            txn.tag("x.io/late:1", Descriptor("application/octet-stream", digest, 22))
    worker.join(10)
    assert gc_done.is_set()
    assert store.blobs.has(digest)


def test_fsck_reports_each_kind_of_damage(store: Store, store_root: Path) -> None:
    image = make_image(store, "x.io/a:1", [b"layer one", b"layer two"])
    assert fsck(store).clean
    layer = store.blobs.path(Digest.of_bytes(b"layer one"))
    os.chmod(layer, 0o644)
    layer.write_bytes(b"layer 0ne")
    os.unlink(store.blobs.path(Digest.of_bytes(b"layer two")))
    (store_root / "blobs" / "sha256" / "junk").write_bytes(b"x")
    index = json.loads((store_root / "index.json").read_bytes())
    index["manifests"] = []
    (store_root / "index.json").write_text(json.dumps(index))
    report = fsck(store)
    text = "\n".join(report.problems)
    assert "damaged" in text and str(Digest.of_bytes(b"layer one")) in text
    assert "missing" in text and str(Digest.of_bytes(b"layer two")) in text
    assert "junk" in text
    assert "out of step" in text
    assert image.digest not in {Digest.of_bytes(b"layer one")}


def test_fsck_reports_a_damaged_journal(store: Store, store_root: Path) -> None:
    make_image(store, "x.io/a:1", [b"x"])
    with open(store_root / "index.journal", "ab") as f:
        f.write(b"deadbeef {broken\n")
    report = fsck(Store.open(store.root, readonly=True, allow_damage=True))
    assert any("index journal" in p for p in report.problems)


def test_list_skips_signature_and_bare_tags(store: Store) -> None:
    from gadgetstore.engine.images import list_images

    image = make_image(store, "x.io/a:1", [b"layer"])
    sign(store, image, ref_style=True)
    with store.transaction() as txn:
        txn.tag(f"sha256-{image.digest.hex}", image)
        txn.tag("latest", image)
    rows, warnings = list_images(store)
    assert [(r.repository, r.tag) for r in rows] == [("x.io/a", "1")]
    assert warnings == []
