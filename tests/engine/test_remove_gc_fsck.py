import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gadgetstore.engine.archive import import_archive
from gadgetstore.engine.descriptor import Descriptor, canonical_json
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import StoreError
from gadgetstore.engine.fsck import fsck, repair_root
from gadgetstore.engine.mediatypes import ANNOTATION_REF_NAME
from gadgetstore.engine.store import Store
from tests.support.cli import run_in_store
from tests.support.locks import wait_for_flock_waiter

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
        wait_for_flock_waiter(store.root / "gc.lock")  # gc asks for the lease exclusively, and waits
        assert not gc_done.is_set(), "gc must wait for the writer's lease"
        with store.transaction() as txn:
            txn.tag("x.io/late:1", Descriptor("application/octet-stream", digest, 22))
    worker.join(10)
    assert gc_done.is_set()
    assert store.blobs.has(digest)


@pytest.mark.leaves_damaged_store
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


@pytest.mark.leaves_damaged_store
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


# -- fsck --repair: everything fsck reports is repaired --------------------------------------------

LAYER_ONE, LAYER_TWO = b"layer one", b"layer two"


def replace_blob(store: Store, data: bytes, make: Callable[[Path], None]) -> Digest:
    digest = Digest.of_bytes(data)
    path = store.blobs.path(digest)
    os.unlink(path)
    make(path)
    return digest


def drop_from_index_json(root: Path, ref: str) -> None:
    """Another tool's edit: adopted (not undone) when the store is next opened for writing."""
    index = json.loads((root / "index.json").read_bytes())
    index["manifests"] = [m for m in index["manifests"] if m["annotations"][ANNOTATION_REF_NAME] != ref]
    (root / "index.json").write_text(json.dumps(index))


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as out:
        out.write(data)


def tag_pointing_at(store: Store, ref: str, desc: Descriptor) -> Digest:
    with store.transaction() as txn:
        txn.tag(ref, desc)
    return desc.digest


DAMAGE: dict[str, tuple[Callable[[Store], object], str, str]] = {
    # kind: (damage, what fsck reports, what repair says)
    "blob_symlink": (lambda s: replace_blob(s, LAYER_ONE, lambda p: p.symlink_to("/etc/passwd")),
                     "is not a regular file", "is not a regular file, to quarantine/"),
    "blob_directory": (lambda s: replace_blob(s, LAYER_ONE, lambda p: p.mkdir()),
                       "is not a regular file", "to quarantine/"),
    "blob_fifo": (lambda s: replace_blob(s, LAYER_ONE, lambda p: os.mkfifo(p)), "is not a regular file",
                  "to quarantine/"),
    "blob_damaged": (lambda s: replace_blob(s, LAYER_ONE, lambda p: p.write_bytes(b"layer 0ne")),
                     "its content has another digest", "to quarantine/"),
    "blob_truncated": (lambda s: replace_blob(s, LAYER_ONE, lambda p: p.write_bytes(b"layer")),
                       "descriptor says 9", "to quarantine/"),
    "blob_missing": (lambda s: os.unlink(s.blobs.path(Digest.of_bytes(LAYER_ONE))), "is missing",
                     "removed tag x.io/a:1: blob"),
    "root_missing": (lambda s: tag_pointing_at(s, "x.io/gone:1", Descriptor(INDEX, Digest.of_bytes(b"gone"), 4)),
                     "tag x.io/gone:1: blob", "removed tag x.io/gone:1"),
    "root_wrong_size": (lambda s: tag_pointing_at(s, "x.io/big:1", Descriptor(
                            INDEX, s.resolve("x.io/a:1").digest, s.resolve("x.io/a:1").size + 1)),
                        "descriptor says", "removed tag x.io/big:1"),
    "root_not_a_document": (lambda s: tag_pointing_at(s, "x.io/text:1", Descriptor(
                                MANIFEST, s.blobs.put(b"not json"), 8)),
                            "not valid JSON", "removed tag x.io/text:1"),
    "stray_file": (lambda s: (s.root / "blobs" / "sha256" / "junk").write_bytes(b"x"),
                   "unexpected entry blobs/sha256/junk", "moved blobs/sha256/junk (not a blob)"),
    "stray_algorithm_symlink": (lambda s: (s.root / "blobs" / "sha512").symlink_to(s.root.parent),
                                "unexpected entry blobs/sha512", "moved blobs/sha512 (not a blob)"),
    "index_json_missing": (lambda s: os.unlink(s.root / "index.json"), "index.json is missing", ""),
    "index_json_garbage": (lambda s: (s.root / "index.json").write_text("{"), "not valid JSON", ""),
    "index_json_nested": (lambda s: (s.root / "index.json").write_text("[" * 100_000 + "]" * 100_000),
                          "not valid JSON", ""),  # deeper than the JSON parser goes
    "root_nested": (lambda s: tag_pointing_at(s, "x.io/deep:1", Descriptor(
                        MANIFEST, s.blobs.put(b"[" * 100_000 + b"]" * 100_000), 200_000)),
                    "not valid JSON", "removed tag x.io/deep:1"),
    "index_json_edited": (lambda s: drop_from_index_json(s.root, "x.io/a:1"), "out of step", ""),
    "journal_damaged": (lambda s: append_bytes(s.root / "index.journal", b"deadbeef {broken\n"),
                        "index journal", "rebuilt the index journal"),
}


def damaged_store(root: Path, kind: str) -> Store:
    store = Store.open(root)
    make_image(store, "x.io/a:1", [LAYER_ONE, LAYER_TWO])
    make_image(store, "x.io/b:1", [b"only in b"])
    DAMAGE[kind][0](store)
    return store


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_fsck_repair_repairs_each_kind_of_damage(store_root: Path, kind: str) -> None:
    _, reported, said = DAMAGE[kind]
    damaged_store(store_root, kind)
    report = fsck(Store.open(store_root, readonly=True, allow_damage=True))
    assert not report.clean and reported in "\n".join(report.problems)
    actions = repair_root(store_root)
    assert said in "\n".join(actions)
    after = fsck(Store.open(store_root))
    assert after.clean, after.problems
    assert "x.io/b:1" in Store.open(store_root).tags(), "an image the damage did not reach stays"


def test_fsck_repair_keeps_its_backup_and_quarantine_durably(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What repair says it kept survives a crash: the damaged journal's copy and each quarantined
    blob are fsync'd with the directories that name them, the copy before the journal is replaced."""
    store = damaged_store(store_root, "journal_damaged")
    replace_blob(store, LAYER_ONE, lambda p: p.write_bytes(b"layer 0ne"))
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1])
    repair_root(store_root)
    (backup,) = store_root.glob("index.journal.damaged-*")
    backup_synced = next(i for i, path in enumerate(synced) if Path(path).name.startswith(f".{backup.name}."))
    journal_replaced = next(i for i, path in enumerate(synced)
                            if Path(path).name.startswith(".index.journal.") and "damaged" not in path)
    assert backup_synced < synced.index(str(store_root), backup_synced) < journal_replaced
    assert (store_root / "quarantine" / f"sha256-{Digest.of_bytes(LAYER_ONE).hex}").read_bytes() == b"layer 0ne"
    assert {str(store_root), str(store_root / "quarantine"), str(store_root / "blobs" / "sha256")} <= set(synced)


@pytest.mark.leaves_damaged_store
def test_fsck_repair_moves_nothing_through_a_quarantine_symlink(store: Store, store_root: Path,
                                                                tmp_path: Path) -> None:
    make_image(store, "x.io/a:1", [LAYER_ONE])
    damaged = replace_blob(store, LAYER_ONE, lambda p: p.write_bytes(b"layer 0ne"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (store_root / "quarantine").symlink_to(elsewhere)
    with pytest.raises(StoreError, match="quarantine is not a directory"):
        repair_root(store_root)
    assert not list(elsewhere.iterdir())
    assert store.blobs.path(damaged).read_bytes() == b"layer 0ne"


def test_fsck_repair_drops_a_pin_whose_blob_is_missing(store: Store, store_root: Path) -> None:
    image = make_image(store, "x.io/a:1", [LAYER_ONE])
    pin = sign(store, image, ref_style=False)
    os.unlink(store.blobs.path(pin.digest))
    assert not fsck(store).clean
    assert f"removed pinned {pin.digest}: blob {pin.digest} is missing" in "\n".join(repair_root(store_root))
    assert fsck(Store.open(store_root)).clean and Store.open(store_root).pins() == []


def test_fsck_repair_makes_writable_blobs_read_only_and_clears_ingest(store: Store, store_root: Path) -> None:
    make_image(store, "x.io/a:1", [LAYER_ONE])
    layer = store.blobs.path(Digest.of_bytes(LAYER_ONE))
    os.chmod(layer, 0o644)
    (store.blobs.ingest_dir / "ingest-leftover").write_bytes(b"partial")
    assert len(fsck(store).notes) == 2
    actions = repair_root(store_root)
    assert f"made blob {Digest.of_bytes(LAYER_ONE)} read-only" in actions
    assert "removed 1 unfinished ingest file(s)" in actions
    assert fsck(Store.open(store_root)).notes == [] and os.stat(layer).st_mode & 0o777 == 0o444


def test_fsck_repair_leaves_ingest_files_of_a_running_writer(store: Store, store_root: Path) -> None:
    (store.blobs.ingest_dir / "ingest-in-flight").write_bytes(b"partial")
    with store.lease():
        assert repair_root(store_root) == []
    assert (store.blobs.ingest_dir / "ingest-in-flight").exists()


def test_a_blobs_directory_replaced_by_a_symlink_is_repaired(tmp_path: Path, store_root: Path) -> None:
    """A ``blobs/sha256`` that is a symlink stops every open for writing; repair still gets in."""
    Store.open(store_root)
    elsewhere = tmp_path / "elsewhere"
    (store_root / "blobs" / "sha256").rename(elsewhere)
    (store_root / "blobs" / "sha256").symlink_to(elsewhere)
    with pytest.raises(StoreError, match="symlinks are refused"):
        Store.open(store_root)
    assert "moved blobs/sha256 (not a blob) to quarantine/stray-blobs-sha256" in repair_root(store_root)
    assert fsck(Store.open(store_root)).clean


def test_a_quarantined_blob_comes_back_with_a_reimport(tmp_path: Path, gadget_tar: Path) -> None:
    root = tmp_path / "s"
    assert run_in_store(root, "image", "import", str(gadget_tar))[0] == 0
    store = Store.open(root)
    layer = max(store.blobs.iter_digests(), key=lambda d: store.blobs.path(d).stat().st_size)
    os.chmod(store.blobs.path(layer), 0o644)
    store.blobs.path(layer).write_bytes(b"bit rot")
    code, out, _ = run_in_store(root, "fsck", "--repair")
    assert code == 0 and "no problems found" in out
    assert f"repaired: moved blob {layer}" in out
    assert "repaired: removed tag ghcr.io/inspektor-gadget/gadget/trace_demo:latest" in out
    assert (root / "quarantine" / f"sha256-{layer.hex}").read_bytes() == b"bit rot"
    assert run_in_store(root, "image", "import", str(gadget_tar))[0] == 0
    code, out, _ = run_in_store(root, "fsck")
    assert code == 0 and "no problems found" in out
    assert Store.open(root).blobs.rehash(layer) == layer
