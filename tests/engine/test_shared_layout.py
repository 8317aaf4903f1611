"""A store shared with ig (ig's own layout, no journal): the engine follows ig's rules.

Stores are made as ig makes them (tests/support/igstore.py, modelled on ig's captured store in
tests/data/ig-pulled-store); what ig itself adds, keeps and deletes is taken from ig's code, cited
per test (pkg/oci/oci.go, pkg/oci/local_oci_store.go, oras-go content/oci/oci.go).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gadgetstore.engine import indexjson, layoutindex
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.fsck import fsck, repair
from gadgetstore.engine.indexjson import EMPTY_INDEX
from gadgetstore.engine.layoutindex import BlobsMissing
from gadgetstore.engine.store import Store
from tests.support.igstore import (
    CAPTURED_REF,
    REF_NAME,
    IgStore,
    captured_store,
    entry_texts,
    ig_list,
    other_gadget,
    tree,
)
from tests.support.images import ArchivedImage

X_ROOT = "sha256:793046c55399dec2908a34df342fcd6c5312d23d2661f107349904a3cd6cad30"
X_AMD64 = "sha256:efd3341d7e02394fbffc8d78f9592405643bad15b13469679b94f80f68f7727c"
X_LAYER_AMD64 = "sha256:4754707731d9510fa1bd84251a0b44956db88cf6098f415ed1369b9c0478dba0"
MISSING = "sha256:" + "d" * 64


def blobs_of(image: ArchivedImage) -> dict[str, bytes]:
    return {str(digest): data for digest, data in image.blobs.items()}


@pytest.fixture
def ig_root(tmp_path: Path) -> Path:
    captured_store(tmp_path / "oci-store")
    return tmp_path / "oci-store"


@pytest.fixture
def busy_root(tmp_path: Path) -> Path:
    """ig's store after an untagged ``ig image build`` of another gadget, with an entry whose blob
    ig's gc deleted and an annotation of index.json's own."""
    (tmp_path / "busy").mkdir()
    store = captured_store(tmp_path / "busy" / "oci-store")
    store.build_untagged(*other_gadget())
    store.entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": MISSING, "size": 9})
    store.annotations = {"io.example.owner": "someone else"}
    store.save()
    return store.root


def test_opening_and_reading_an_ig_store_writes_nothing(busy_root: Path) -> None:
    before = tree(busy_root)
    store = Store.open(busy_root)  # even an open for writing: nothing is made until a change
    assert store.shared and store.tags() == [CAPTURED_REF]
    store.walk(store.roots(), missing_ok=True)
    store.refresh()
    assert tree(busy_root) == before


def test_untagged_entries_are_pins_as_oras_reads_them(busy_root: Path) -> None:
    blobs, root = other_gadget()
    other = {root["digest"], *(c["digest"] for c in json.loads(blobs[root["digest"]])["manifests"])}
    pins = {str(pin.digest) for pin in Store.open(busy_root).pins()}
    assert pins == {X_AMD64, "sha256:bc03dd0e3f8174ae8942aad481ff20670a265b3e4c364f8d0a49f2b3db874d6c", MISSING,
                    *other}


def test_a_reader_holds_igs_lock_shared_while_it_reads_index_json(ig_root: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """ig writes index.json only under LOCK_EX (local_oci_store.go saveIndexWithLock)."""
    held: list[tuple[bool, bool]] = []
    real = layoutindex.load_index

    def probing(path: Path, locked: bool) -> object:
        fd = os.open(ig_root / "index.json.lock", os.O_RDONLY)
        try:
            held.append((locked, not _can_lock(fd, fcntl.LOCK_EX) and _can_lock(fd, fcntl.LOCK_SH)))
        finally:
            os.close(fd)
        return real(path, locked)

    monkeypatch.setattr(layoutindex, "load_index", probing)
    Store.open(ig_root, readonly=True)
    assert held == [(True, True)]


def _can_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def test_a_reader_creates_no_lock_file(ig_root: Path) -> None:
    os.unlink(ig_root / "index.json.lock")
    before = tree(ig_root)
    assert Store.open(ig_root, readonly=True).tags() == [CAPTURED_REF]
    assert tree(ig_root) == before


def test_a_change_holds_igs_lock_exclusively(ig_root: Path) -> None:
    store = Store.open(ig_root)
    fd = os.open(ig_root / "index.json.lock", os.O_RDONLY)
    try:
        with store.transaction() as txn:
            assert not _can_lock(fd, fcntl.LOCK_SH)
            txn.tag("ghcr.io/inspektor-gadget/gadget/trace_demo:mine", store.resolve(CAPTURED_REF))
        assert _can_lock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def test_a_tag_adds_the_entry_igs_tag_adds_and_keeps_every_other_byte(ig_root: Path) -> None:
    """ig ``image tag`` (pkg/oci/oci.go tagGadgetImage) copies the source's tagged descriptor with the
    new ref.name; the entry below is the one in ig's own store after ``ig image tag
    127.0.0.1:55841/x:v1 trace_demo:mine`` (research capture ig-tag.index.json)."""
    before = entry_texts(ig_root)
    store = Store.open(ig_root)
    with store.transaction() as txn:
        txn.tag("ghcr.io/inspektor-gadget/gadget/trace_demo:mine", store.resolve(CAPTURED_REF))
    after = entry_texts(ig_root)
    assert after == [before[0], '{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"' + X_ROOT
                     + '","size":2032,"annotations":{"org.opencontainers.image.ref.name":'
                     '"ghcr.io/inspektor-gadget/gadget/trace_demo:mine"}}', *before[1:]]
    assert not (ig_root / "index.journal").exists() and not (ig_root / "gc.lock").exists()
    assert ig_list(ig_root).splitlines()[1:] == [
        f"127.0.0.1:55841/x v1 {X_ROOT} 2023-11-14T22:13:20Z", f"trace_demo mine {X_ROOT} 2023-11-14T22:13:20Z"]


@pytest.mark.leaves_damaged_store
def test_a_blob_that_vanished_is_never_indexed(ig_root: Path) -> None:
    """ig's ``image remove`` deletes every blob index.json does not reach (oras Store.GC): a change
    checks, under the lock, that what it names is there."""
    store = Store.open(ig_root)
    root = store.resolve(CAPTURED_REF)
    os.unlink(ig_root / "blobs" / "sha256" / X_LAYER_AMD64[7:])
    before = tree(ig_root)
    with pytest.raises(BlobsMissing, match=f"vanished before they could be indexed \\({X_LAYER_AMD64}"), \
            store.transaction() as txn:
        txn.tag("x.io/again:1", root)
    assert tree(ig_root) == before


def test_a_bulk_change_writes_index_json_once(ig_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each write makes a running ig command start over (saveIndexWithLock's DeepEqual), and ig gives
    up after 20 (pkg/oci/retry.go)."""
    writes: list[int] = []
    real = layoutindex.write_index
    monkeypatch.setattr(layoutindex, "write_index", lambda path, doc: (writes.append(1), real(path, doc)))
    store = Store.open(ig_root)
    root = store.resolve(CAPTURED_REF)
    with store.deferred_index_json():
        for i in range(5):
            with store.transaction() as txn:
                txn.tag(f"x.io/many:{i}", root)
        assert store.tags() == sorted([CAPTURED_REF, *(f"x.io/many:{i}" for i in range(5))])  # seen here at once
        assert Store.open(ig_root, readonly=True).tags() == [CAPTURED_REF]  # by others at the end
        assert writes == []
    assert len(writes) == 1
    assert Store.open(ig_root, readonly=True).tags() == store.tags()


def test_an_untagged_build_adds_what_igs_untagged_build_adds(tmp_path: Path, gadget_image: ArchivedImage) -> None:
    """ig ``image build`` without ``-t`` (pkg/oci/build.go) pushes the root and each manifest untagged."""
    ig = IgStore.create(tmp_path / "by-ig")
    ig.build_untagged(blobs_of(gadget_image), gadget_image.root.to_json())
    ours = IgStore.create(tmp_path / "by-us")
    for data in blobs_of(gadget_image).values():
        ours.put(data)
    store = Store.open(ours.root)
    index = json.loads(gadget_image.blobs[gadget_image.root.digest])
    root = gadget_image.root.with_annotations(index["annotations"])
    with store.transaction() as txn:
        txn.pin(root)
    assert sorted(entry_texts(ours.root)) == sorted(entry_texts(ig.root))


def test_remove_drops_the_image_and_its_untagged_entries_and_keeps_the_rest(busy_root: Path) -> None:
    """ig's remove (oci.go deleteGadgetImage → oras Store.Delete) untags the root and every manifest
    below it that nothing else reaches, then deletes their blobs."""
    before = entry_texts(busy_root)
    store = Store.open(busy_root)
    assert store.remove_image(CAPTURED_REF) is True
    assert entry_texts(busy_root) == before[3:]  # the untagged build and the dangling entry, byte for byte
    assert json.loads((busy_root / "index.json").read_bytes())["annotations"] == {"io.example.owner": "someone else"}
    assert not (busy_root / "blobs" / "sha256" / X_ROOT[7:]).exists()
    assert not (busy_root / "blobs" / "sha256" / X_LAYER_AMD64[7:]).exists()
    assert len(list((busy_root / "blobs" / "sha256").iterdir())) == 6  # the untagged build's six, all young


def test_remove_of_one_of_two_tags_only_untags(ig_root: Path) -> None:
    store = Store.open(ig_root)
    with store.transaction() as txn:
        txn.tag("x.io/copy:1", store.resolve(CAPTURED_REF))
    before = entry_texts(ig_root)
    assert store.remove_image(CAPTURED_REF) is False
    assert entry_texts(ig_root) == before[1:]
    assert len(list((ig_root / "blobs" / "sha256").iterdir())) == 6


@pytest.fixture
def stray(ig_root: Path) -> Iterator[IgStore]:
    """ig's store with an unreferenced blob (as if ig had just fetched it), an oras ingest file of a
    running ig pull, and a leftover ingest file of ours."""
    store = IgStore(ig_root)
    store.put(b"fetched by ig a moment ago, not indexed yet")
    (ig_root / "ingest" / ("a" * 64 + "_123")).write_bytes(b"oras is writing this")
    (ig_root / "ingest" / "ingest-sha256-abc-x1").write_bytes(b"ours, left by a kill -9")
    yield store


def test_gc_keeps_young_unreferenced_blobs_and_never_touches_oras_ingest_files(ig_root: Path, stray: IgStore) -> None:
    store = Store.open(ig_root)
    report = store.gc()
    assert report.removed_blobs == [] and report.kept_young == 1 and report.removed_ingest_files == 1
    assert sorted(p.name for p in (ig_root / "ingest").iterdir()) == ["a" * 64 + "_123"]
    report = store.gc(grace=0)
    assert len(report.removed_blobs) == 1 and report.kept_young == 0
    assert (ig_root / "ingest" / ("a" * 64 + "_123")).exists()
    assert ig_list(ig_root).splitlines()[1:] == [f"127.0.0.1:55841/x v1 {X_ROOT} 2023-11-14T22:13:20Z"]


def test_gc_deletes_under_igs_lock(ig_root: Path, stray: IgStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """ig names blobs in index.json only under its lock: deleting under it, none is named meanwhile."""
    store = Store.open(ig_root)
    fd = os.open(ig_root / "index.json.lock", os.O_RDONLY)
    locked: list[bool] = []
    real = store.blobs.delete
    monkeypatch.setattr(store.blobs, "delete", lambda digest: (locked.append(not _can_lock(fd, fcntl.LOCK_SH)),
                                                               real(digest))[1])
    try:
        store.gc(grace=0)
    finally:
        os.close(fd)
    assert locked == [True]


def test_gc_keeps_what_any_entry_reaches(busy_root: Path) -> None:
    """Wider than ig's gc (oras gcIndex keeps only what tags reach): an untagged build stays."""
    store = Store.open(busy_root)
    before = tree(busy_root)
    report = store.gc(grace=0)
    assert report.removed_blobs == [] and tree(busy_root) == before


def test_fsck_finds_an_ig_store_healthy_and_notes_a_dangling_entry(ig_root: Path, busy_root: Path) -> None:
    report = fsck(Store.open(ig_root, readonly=True))
    assert report.clean and report.notes == [] and report.references_checked == 3 and report.blobs_checked == 6
    report = fsck(Store.open(busy_root, readonly=True))
    assert report.clean, report.problems
    assert report.notes == [f"untagged entry {MISSING}: its blob is missing (ig's image remove leaves such entries, "
                            "and they stop ig's own gc); fsck --repair drops it"]


def test_fsck_repair_drops_what_hurts_ig_and_keeps_every_other_entry(busy_root: Path) -> None:
    ig = IgStore(busy_root, json.loads((busy_root / "index.json").read_bytes())["manifests"],
                 {"io.example.owner": "someone else"})
    # a referrer of the untagged build: ig's gc would loop for ever over it (oras gcIndex)
    referrer = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                      "digest": ig.put(b"{}"), "size": 2},
                           "layers": [], "subject": other_gadget()[1]}).encode()
    ig.entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": ig.put(referrer),
                       "size": len(referrer)})
    ig.save()
    os.chmod(ig.blob_path(X_AMD64), 0o644)
    os.unlink(ig.blob_path(X_AMD64))  # ig cannot run x:v1 any more, and a re-pull does not bring it back
    before = entry_texts(busy_root)
    report = fsck(Store.open(busy_root, readonly=True))
    assert sorted(report.problems) == sorted([
        f"tag {CAPTURED_REF}: blob {X_AMD64} is missing",
        f"untagged referrer {ig.entries[-1]['digest']}: its subject {other_gadget()[1]['digest']} is reached by no tag "
        "(ig's image remove would never end)",
    ])
    actions = repair(Store.open(busy_root))
    assert f"removed tag {CAPTURED_REF}: blob {X_AMD64} is missing; pull or import it again" in actions
    kept = [text for text in before if X_ROOT not in text and MISSING not in text and X_AMD64 not in text
            and ig.entries[-1]["digest"] not in text]
    assert entry_texts(busy_root) == kept
    assert fsck(Store.open(busy_root, readonly=True)).clean


def test_a_new_store_where_ig_keeps_one_is_made_as_ig_makes_it(tmp_path: Path) -> None:
    """ig's newLocalOciStore (MkdirAll 0700, then the lock) and oras oci.New (blobs/, oci-layout, index.json)."""
    root = tmp_path / "home" / ".ig" / "oci-store"
    store = Store.open(root)
    assert store.shared
    assert sorted(p.name for p in root.iterdir()) == ["blobs", "index.json", "index.json.lock", "oci-layout"]
    assert os.stat(root).st_mode & 0o777 == 0o700 and os.stat(root / "index.json.lock").st_mode & 0o777 == 0o600
    assert os.stat(root.parent).st_mode & 0o777 == 0o700  # MkdirAll makes every missing directory so
    assert (root / "oci-layout").read_bytes() == b'{"imageLayoutVersion":"1.0.0"}'
    assert (root / "index.json").read_bytes() == EMPTY_INDEX and len(EMPTY_INDEX) == 88


def test_a_change_to_an_empty_ig_store_is_what_igs_pull_writes(tmp_path: Path, gadget_image: ArchivedImage) -> None:
    """The bytes of index.json after ig's pull of one image (tests/support/igstore.py IgStore.pull)."""
    ig = IgStore.create(tmp_path / "by-ig")
    ig.pull(blobs_of(gadget_image), gadget_image.root.to_json(), gadget_image.reference)
    ours = IgStore.create(tmp_path / "by-us")
    for data in blobs_of(gadget_image).values():
        ours.put(data)
    store = Store.open(ours.root)
    with store.transaction() as txn:
        txn.tag(gadget_image.reference, Descriptor.from_json(gadget_image.root.to_json()))
    assert (ours.root / "index.json").read_bytes() == (ig.root / "index.json").read_bytes()


def test_reading_again_inside_a_change_does_not_wait_for_itself(ig_root: Path) -> None:
    """flock locks belong to open files: a shared lock taken on a second descriptor would wait for
    the exclusive one this process holds."""
    store = Store.open(ig_root)
    with store.transaction() as txn:
        store.refresh()
        txn.tag("x.io/again:1", store.resolve(CAPTURED_REF))
    assert "x.io/again:1" in Store.open(ig_root, readonly=True).tags()


def test_discarding_refused_blobs_deletes_only_what_nothing_reaches(ig_root: Path) -> None:
    store = Store.open(ig_root)
    refused = Digest.parse(IgStore(ig_root).put(b"a signature that did not verify"))
    assert store.discard({refused, Digest.parse(X_ROOT)}) == 1
    assert not store.blobs.has(refused) and store.blobs.has(Digest.parse(X_ROOT))


def test_fsck_reports_a_damaged_manifest_of_an_ig_store_and_repair_sets_it_aside(ig_root: Path) -> None:
    """A damaged manifest index.json reaches breaks every ig command (oras loadIndex verifies it)."""
    path = ig_root / "blobs" / "sha256" / X_AMD64[7:]
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes()[:-1] + b" ")
    report = fsck(Store.open(ig_root, readonly=True))
    assert f"blob {X_AMD64} is damaged: its content has another digest" in report.problems
    actions = repair(Store.open(ig_root))
    assert any(action.startswith(f"moved blob {X_AMD64}") for action in actions)
    assert f"removed tag {CAPTURED_REF}: blob {X_AMD64} is missing; pull or import it again" in actions
    assert fsck(Store.open(ig_root, readonly=True)).clean
    assert ig_list(ig_root) == "REPOSITORY TAG DIGEST CREATED\n"


def test_blob_names_are_durable_before_index_json_names_them(ig_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers that publish many blobs leave the directory fsync to the change (import, pull)."""
    from gadgetstore.engine import blobstore

    calls: list[str] = []
    real_sync, real_write = blobstore.fsync_dir, layoutindex.write_index
    monkeypatch.setattr(blobstore, "fsync_dir", lambda path: (calls.append(f"fsync_dir:{path.name}"), real_sync(path)))
    monkeypatch.setattr(layoutindex, "write_index", lambda path, doc: (calls.append("index.json"),
                                                                       real_write(path, doc)))
    store = Store.open(ig_root)
    with store.transaction() as txn:
        txn.tag("x.io/durable:1", store.resolve(CAPTURED_REF))
    assert calls == ["fsync_dir:sha256", "index.json"]


def test_untagged_images_are_builds_not_the_manifests_below_an_image(busy_root: Path) -> None:
    """ig writes an untagged entry for every manifest it pushes; only roots nothing reaches are images."""
    _, other_root = other_gadget()
    store = Store.open(busy_root)
    assert [str(image.digest) for image in store.untagged_images()] == [other_root["digest"]]


def test_removing_an_untagged_image_keeps_every_other_entry(busy_root: Path) -> None:
    blobs, other_root = other_gadget()
    before = entry_texts(busy_root)
    store = Store.open(busy_root)
    assert store.remove_untagged([Digest.parse(X_ROOT)])[0] == []  # tagged: not an untagged image
    assert entry_texts(busy_root) == before
    assert store.remove_untagged([Digest.parse(other_root["digest"])])[0] == [Digest.parse(other_root["digest"])]
    assert entry_texts(busy_root) == [text for text in before if not any(d in text for d in blobs)]
    assert not any((busy_root / "blobs" / "sha256" / d[7:]).exists() for d in blobs)  # young, but removed
    assert ig_list(busy_root).splitlines()[1:] == [f"127.0.0.1:55841/x v1 {X_ROOT} 2023-11-14T22:13:20Z"]


def test_an_untagged_build_in_gadgetstores_own_store_can_be_removed(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "own")
    blobs, root = other_gadget()
    for data in blobs.values():
        store.blobs.put(data)
    with store.transaction() as txn:
        txn.pin(Descriptor.from_json(root))
    assert [image.digest for image in store.untagged_images()] == [Digest.parse(root["digest"])]
    assert store.remove_untagged([Digest.parse(root["digest"])])[0] == [Digest.parse(root["digest"])]
    assert store.pins() == [] and list(store.blobs.iter_digests()) == []


def test_generation_sees_igs_in_place_rewrite_of_the_same_size_at_once(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """ig rewrites index.json in place: a rewrite right after a read may keep its size, its inode and,
    on a file system whose times have a granularity of a second (ext3, some network file systems),
    its times; a stat taken that soon after a change does not identify the content."""
    def coarse_stat_key(path: Path) -> tuple[int, int, int, int] | None:
        key = real_stat_key(path)
        return None if key is None else (key[0], key[1] // 10**9 * 10**9, key[2] // 10**9 * 10**9, key[3])

    real_stat_key = indexjson.stat_key
    monkeypatch.setattr(indexjson, "stat_key", coarse_stat_key)
    monkeypatch.setattr(layoutindex, "stat_key", coarse_stat_key)
    ig = captured_store(tmp_path / "oci-store")
    store = Store.open(ig.root, readonly=True)
    first = store.generation()
    assert store.generation() == first
    before = os.stat(ig.root / "index.json")
    ig.entries[0]["annotations"][REF_NAME] = CAPTURED_REF.replace(":v1", ":v2")
    ig.save()
    after = os.stat(ig.root / "index.json")
    assert (after.st_size, after.st_ino) == (before.st_size, before.st_ino)
    assert store.generation() != first
    assert store.tags() == [CAPTURED_REF.replace(":v1", ":v2")]


def test_generation_reads_index_json_again_only_when_its_stat_changed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Polling an unchanged store costs a stat, not a read and parse of index.json."""
    ig = captured_store(tmp_path / "oci-store")
    monkeypatch.setattr(layoutindex, "SETTLED_NS", 0)  # every stat identifies its content at once
    reads: list[Path] = []
    real_load = layoutindex.load_index
    monkeypatch.setattr(layoutindex, "load_index",
                        lambda path, locked: (reads.append(path), real_load(path, locked))[1])
    store = Store.open(ig.root, readonly=True)
    first = store.generation()
    assert [store.generation() for _ in range(3)] == [first] * 3 and len(reads) == 1
    ig.build_untagged(*other_gadget())
    assert store.generation() != first and len(reads) == 2
