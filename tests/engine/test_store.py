import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gadgetstore.engine import journal_format as jf
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import ImageNotFound, StoreError
from gadgetstore.engine.fsck import fsck
from gadgetstore.engine.store import Store
from tests.support.journals import NOT_RECORDS, append_checksummed

WORKER = Path(__file__).with_name("store_worker.py")


def blob_desc(store: Store, text: str) -> Descriptor:
    digest = store.blobs.put(text.encode())
    return Descriptor("application/octet-stream", digest, len(text))


def run_worker(root: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    if crash_at:
        env["GADGETSTORE_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, str(WORKER), str(root), *args], env=env, capture_output=True, timeout=60)


def test_new_store_is_an_oci_layout(store: Store, store_root: Path) -> None:
    assert json.loads((store_root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((store_root / "index.json").read_bytes())
    assert index["schemaVersion"] == 2 and index["manifests"] == []


def test_tags_survive_reopen_and_index_json_follows(store: Store, store_root: Path) -> None:
    desc = blob_desc(store, "one")
    with store.transaction() as txn:
        txn.tag("example.com/a:1", desc)
        txn.tag("example.com/a:2", desc)
    with store.transaction() as txn:
        txn.untag("example.com/a:1")
    reopened = Store.open(store_root)
    assert reopened.tags() == ["example.com/a:2"]
    assert reopened.resolve("example.com/a:2").digest == desc.digest
    index = json.loads((store_root / "index.json").read_bytes())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert names == ["example.com/a:2"]
    with pytest.raises(ImageNotFound):
        reopened.resolve("example.com/a:1")


def index_json_refs(root: Path) -> list[str]:
    index = json.loads((root / "index.json").read_bytes())
    return sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"])


def test_deferred_index_json_is_written_once_when_the_outermost_block_ends(store: Store, store_root: Path) -> None:
    desc = blob_desc(store, "one")
    with store.deferred_index_json():
        with store.transaction() as txn:
            txn.tag("example.com/a:1", desc)
        with store.deferred_index_json(), store.transaction() as txn:
            txn.tag("example.com/a:2", desc)
        assert index_json_refs(store_root) == []  # the inner block's end is not the end
        assert Store.open(store_root, readonly=True).tags() == ["example.com/a:1", "example.com/a:2"]
        report = fsck(Store.open(store_root, readonly=True))  # a pull under way is not damage
        assert not report.problems and any("lags the index journal" in n for n in report.notes)
    assert index_json_refs(store_root) == ["example.com/a:1", "example.com/a:2"]
    assert not fsck(Store.open(store_root, readonly=True)).problems
    with store.transaction() as txn:  # after the block, each transaction writes index.json again
        txn.untag("example.com/a:1")
    assert index_json_refs(store_root) == ["example.com/a:2"]


def test_compaction_inside_a_deferred_block_writes_index_json_at_once(
        store: Store, store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal prefix that index.json was written from is gone after a compaction, so index.json
    must not lag across one (a foreign edit could not be merged three-way any more)."""
    desc = blob_desc(store, "one")
    with store.deferred_index_json():
        with store.transaction() as txn:
            txn.tag("example.com/a:1", desc)
        assert index_json_refs(store_root) == []
        monkeypatch.setattr(store.journal, "wants_compaction", lambda: True)
        with store.transaction() as txn:
            txn.tag("example.com/a:2", desc)
        assert index_json_refs(store_root) == ["example.com/a:1", "example.com/a:2"]
        assert not fsck(Store.open(store_root, readonly=True)).problems


def no_space(*args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("deferred", [False, True])
def test_a_compaction_that_finds_no_space_leaves_the_commit_standing(
        store: Store, store_root: Path, monkeypatch: pytest.MonkeyPatch, deferred: bool) -> None:
    """Compacting only saves space: the record is in the journal, so the transaction succeeded."""
    desc = blob_desc(store, "one")
    monkeypatch.setattr(store.journal, "wants_compaction", lambda: True)
    monkeypatch.setattr(store.journal, "compact", no_space)
    batch = store.deferred_index_json() if deferred else contextlib.nullcontext()
    with batch, store.transaction() as txn:
        txn.tag("example.com/a:1", desc)
    assert Store.open(store_root).tags() == ["example.com/a:1"]
    assert index_json_refs(store_root) == ["example.com/a:1"]


def test_a_journal_append_that_fails_is_taken_back(store: Store, store_root: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An fsync of the journal that fails (a full disk) must not leave a whole record behind: the
    error says nothing was recorded, and the next replay must agree."""
    with store.transaction() as txn:
        txn.tag("example.com/a:1", blob_desc(store, "one"))
    journal = store_root / "index.journal"
    before = journal.read_bytes()
    real_fsync, failures = os.fsync, [1]

    def fsync(fd: int) -> None:  # the record's fsync fails, as a full disk reports a lost write once
        if failures and os.readlink(f"/proc/self/fd/{fd}") == str(journal):
            failures.pop()
            no_space()
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"), store.transaction() as txn:
        txn.tag("example.com/a:2", blob_desc(store, "two"))
    monkeypatch.undo()
    assert journal.read_bytes() == before
    assert Store.open(store_root).tags() == ["example.com/a:1"]


def add_and_drop_in_index_json(root: Path, desc: Descriptor, add: str, drop: str) -> None:
    """What skopeo or oras does to the layout's index.json: read it, change entries, write it back."""
    index = json.loads((root / "index.json").read_bytes())
    index["manifests"] = [m for m in index["manifests"]
                          if m["annotations"]["org.opencontainers.image.ref.name"] != drop]
    index["manifests"].append({**desc.to_json(), "annotations": {"org.opencontainers.image.ref.name": add}})
    (root / "index.json").write_bytes(json.dumps(index).encode())


def test_another_tools_edit_of_a_lagging_index_json_keeps_our_newer_tags(store: Store, store_root: Path) -> None:
    desc = blob_desc(store, "one")
    with store.transaction() as txn:
        txn.tag("example.com/old:1", desc)
        txn.tag("example.com/old:2", desc)
    with store.deferred_index_json():
        with store.transaction() as txn:
            txn.tag("example.com/new:1", desc)
        # the other tool sees index.json without new:1; its edit must not read as "new:1 removed"
        add_and_drop_in_index_json(store_root, desc, add="other:tool", drop="example.com/old:1")
        problems = fsck(Store.open(store_root, readonly=True)).problems
        assert "index.json is out of step with the index journal" in problems
    expected = ["example.com/new:1", "example.com/old:2", "other:tool"]
    assert index_json_refs(store_root) == expected
    assert Store.open(store_root).tags() == expected


def test_a_merged_tag_removed_later_in_a_deferred_block_stays_removed(store: Store, store_root: Path) -> None:
    desc = blob_desc(store, "one")
    with store.transaction() as txn:
        txn.tag("example.com/old:1", desc)
    with store.deferred_index_json():
        add_and_drop_in_index_json(store_root, desc, add="other:tool", drop="")
        with store.transaction() as txn:  # adopts other:tool
            txn.tag("example.com/new:1", desc)
        with store.transaction() as txn:
            txn.untag("other:tool")
    expected = ["example.com/new:1", "example.com/old:1"]
    assert Store.open(store_root).tags() == expected
    assert index_json_refs(store_root) == expected


def test_a_merge_whose_transaction_fails_still_makes_index_json_ours(store: Store, store_root: Path) -> None:
    desc = blob_desc(store, "one")
    with store.deferred_index_json():
        add_and_drop_in_index_json(store_root, desc, add="other:tool", drop="")
        with pytest.raises(RuntimeError), store.transaction():  # adopts other:tool, then fails
            raise RuntimeError("the body failed")
        with store.transaction() as txn:
            txn.untag("other:tool")
        with store.transaction() as txn:
            txn.tag("example.com/a:1", desc)
    assert Store.open(store_root).tags() == ["example.com/a:1"]
    assert index_json_refs(store_root) == ["example.com/a:1"]


def test_another_tools_edit_after_a_crash_keeps_what_the_journal_has(store: Store, store_root: Path) -> None:
    desc = blob_desc(store, "x.io/r")
    with store.transaction() as txn:
        txn.tag("x.io/r-old", desc)
    proc = run_worker(store_root, "tag-deferred-then-die", "x.io/r", "2")
    assert proc.returncode == -9
    add_and_drop_in_index_json(store_root, desc, add="other:tool", drop="x.io/r-old")
    expected = ["other:tool", "x.io/r-0", "x.io/r-1"]
    assert Store.open(store_root).tags() == expected
    assert index_json_refs(store_root) == expected


def test_kill_inside_a_deferred_block_is_caught_up_on_open(store: Store, store_root: Path) -> None:
    proc = run_worker(store_root, "tag-deferred-then-die", "x.io/r", "3")
    assert proc.returncode == -9 and b"DONE" in proc.stdout
    assert index_json_refs(store_root) == []  # killed before the block's end: index.json lags the journal
    assert not fsck(Store.open(store_root, readonly=True)).problems
    assert Store.open(store_root).tags() == ["x.io/r-0", "x.io/r-1", "x.io/r-2"]
    assert index_json_refs(store_root) == ["x.io/r-0", "x.io/r-1", "x.io/r-2"]
    assert not fsck(Store.open(store_root, readonly=True)).problems


def test_other_process_changes_are_seen_on_refresh(store: Store, store_root: Path) -> None:
    assert run_worker(store_root, "put-and-tag", "x.io/r:1", "payload").returncode == 0
    assert store.lookup("x.io/r:1") is None
    store.refresh()
    assert store.lookup("x.io/r:1") is not None


def test_generation_moves_with_every_change_and_only_then(store: Store, store_root: Path) -> None:
    """What the mount and serve poll: equal while nothing changed, different after a change by this
    process or another; compacting changes no tag, so not the generation either."""
    first = store.generation()
    assert store.generation() == first
    assert run_worker(store_root, "put-and-tag", "x.io/other:1", "payload").returncode == 0
    second = store.generation()
    assert second != first and store.lookup("x.io/other:1") is not None
    assert store.generation() == second
    with store.transaction() as txn:
        txn.tag("x.io/mine:1", blob_desc(store, "one"))
    third = store.generation()
    assert third != second
    store.compact()
    assert store.generation() == third


def test_torn_journal_tail_is_cut_on_open(store: Store, store_root: Path) -> None:
    desc = blob_desc(store, "one")
    with store.transaction() as txn:
        txn.tag("x.io/keep:1", desc)
    journal = store_root / "index.journal"
    good_length = journal.stat().st_size
    with open(journal, "ab") as f:
        f.write(jf.encode_transaction([jf.Tag("x.io/torn:1", desc.to_json())])[:-5])
    reopened = Store.open(store_root)
    assert reopened.tags() == ["x.io/keep:1"]
    assert journal.stat().st_size == good_length
    assert fsck(reopened).clean


def damage_middle_record(store: Store, store_root: Path) -> Path:
    desc = blob_desc(store, "one")
    for ref in ("x.io/a:1", "x.io/b:1", "x.io/c:1"):
        with store.transaction() as txn:
            txn.tag(ref, desc)
    journal = store_root / "index.journal"
    data = bytearray(journal.read_bytes())
    data[data.index(b"x.io/b:1")] = ord("X")  # a complete record that no longer matches its checksum
    os.chmod(journal, 0o644)
    journal.write_bytes(bytes(data))
    return journal


@pytest.mark.leaves_damaged_store
def test_damaged_record_is_refused_not_cut(store: Store, store_root: Path) -> None:
    journal = damage_middle_record(store, store_root)
    before = (journal.read_bytes(), (store_root / "index.json").read_bytes())
    with pytest.raises(StoreError, match=r"damaged .*fsck --repair"):
        Store.open(store_root)
    with pytest.raises(StoreError, match="fsck --repair"):
        Store.open(store_root, readonly=True)
    assert (journal.read_bytes(), (store_root / "index.json").read_bytes()) == before, "nothing may be cut or rewritten"
    report = fsck(Store.open(store_root, readonly=True, allow_damage=True))
    assert any("index journal" in p for p in report.problems)


def test_repair_salvages_every_intact_record(store: Store, store_root: Path) -> None:
    from gadgetstore.engine.fsck import repair

    damage_middle_record(store, store_root)
    actions = repair(Store.open(store_root, allow_damage=True))
    assert any("dropped 1" in a for a in actions)
    assert list(store_root.glob("index.journal.damaged-*")), "the damaged journal is kept"
    reopened = Store.open(store_root)
    assert reopened.tags() == ["x.io/a:1", "x.io/c:1"]
    assert fsck(reopened).clean


@pytest.mark.parametrize(("payload", "why"), NOT_RECORDS.values(), ids=NOT_RECORDS.keys())
def test_a_checksummed_record_with_a_bad_operation_is_damage(store: Store, store_root: Path,
                                                             payload: bytes, why: str) -> None:
    """Not a traceback: refused in one line pointing at fsck --repair, which drops that record alone."""
    from gadgetstore.engine.fsck import repair

    desc = blob_desc(store, "one")
    with store.transaction() as txn:
        txn.tag("x.io/a:1", desc)
    journal = store_root / "index.journal"
    start = append_checksummed(journal, payload)
    damage = f"corrupt record at byte {start} ({why})"
    with pytest.raises(StoreError) as refused:
        Store.open(store_root)
    assert str(refused.value) == f"index journal {journal} is damaged ({damage}); run 'gadgetstore fsck --repair'"
    assert fsck(Store.open(store_root, readonly=True, allow_damage=True)).problems == [f"index journal: {damage}"]
    assert any("dropped 1" in a for a in repair(Store.open(store_root, allow_damage=True)))
    assert Store.open(store_root).tags() == ["x.io/a:1"]


def test_damaged_header_is_refused_and_repairable(store: Store, store_root: Path) -> None:
    from gadgetstore.engine.fsck import repair

    with store.transaction() as txn:
        txn.tag("x.io/a:1", blob_desc(store, "one"))
    journal = store_root / "index.journal"
    journal.write_bytes(b"X" + journal.read_bytes()[1:])
    with pytest.raises(StoreError):
        Store.open(store_root)
    repair(Store.open(store_root, allow_damage=True))
    assert Store.open(store_root).tags() == ["x.io/a:1"]


def test_readonly_open_of_a_foreign_layout_writes_nothing(tmp_path: Path) -> None:
    root = make_foreign_layout(tmp_path)
    before = sorted((p.name, p.read_bytes() if p.is_file() else b"") for p in root.rglob("*"))
    store = Store.open(root, readonly=True)
    assert store.tags() == ["x.io/adopted:1"]
    assert sorted((p.name, p.read_bytes() if p.is_file() else b"") for p in root.rglob("*")) == before


def test_tags_added_to_index_json_by_another_tool_are_adopted(store: Store, store_root: Path) -> None:
    desc = blob_desc(store, "one")
    with store.transaction() as txn:
        txn.tag("x.io/ours:1", desc)
        txn.tag("x.io/gone:1", desc)
    index = json.loads((store_root / "index.json").read_bytes())
    index["manifests"] = [m for m in index["manifests"]
                          if m["annotations"]["org.opencontainers.image.ref.name"] != "x.io/gone:1"]
    index["manifests"].append({**desc.to_json(), "annotations": {"org.opencontainers.image.ref.name": "extra"}})
    (store_root / "index.json").write_text(json.dumps(index, indent=1))  # as another tool would rewrite it
    reopened = Store.open(store_root)
    assert reopened.tags() == ["extra", "x.io/ours:1"]
    assert fsck(reopened).clean


def test_skopeo_writing_into_the_store_is_seen(store: Store, store_root: Path, gadget_tar: Path) -> None:
    from gadgetstore.engine.archive import import_archive

    (ref,) = import_archive(store, gadget_tar)
    subprocess.run(["skopeo", "copy", "-q", "--all", "--preserve-digests", f"oci:{store_root}:{ref}",
                    f"oci:{store_root}:copied-by-skopeo"], check=True, capture_output=True)
    reopened = Store.open(store_root)
    assert reopened.resolve("copied-by-skopeo").digest == reopened.resolve(ref).digest
    assert fsck(reopened).clean


def test_compaction_keeps_state_and_shrinks_the_journal(store: Store, store_root: Path) -> None:
    desc = blob_desc(store, "one")
    for i in range(300):
        with store.transaction() as txn:
            txn.tag("x.io/r:keep", desc)
            txn.tag(f"x.io/r:{i}", desc)
            txn.untag(f"x.io/r:{i}")
    journal = store_root / "index.journal"
    assert journal.read_bytes().count(b"\n") < 100, "automatic compaction should have run"
    assert Store.open(store_root).tags() == ["x.io/r:keep"]
    store.compact()
    assert journal.read_bytes().count(b"\n") == 2
    assert Store.open(store_root).tags() == ["x.io/r:keep"]


def test_four_processes_tagging_at_once_lose_nothing(store: Store, store_root: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(store_root), "tag-many", f"x.io/p{n}", "40"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    reopened = Store.open(store_root)
    assert len(reopened.tags()) == 160
    index = json.loads((store_root / "index.json").read_bytes())
    assert len(index["manifests"]) == 160
    assert fsck(reopened).clean


def make_foreign_layout(tmp_path: Path) -> Path:
    """An OCI layout as skopeo or ig leave it: index.json, blobs, no journal."""
    root = tmp_path / "layout"
    (root / "blobs" / "sha256").mkdir(parents=True)
    data = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    digest = Digest.of_bytes(data)
    (root / "blobs" / "sha256" / digest.hex).write_bytes(data)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    entry = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": str(digest), "size": len(data),
             "annotations": {"org.opencontainers.image.ref.name": "x.io/adopted:1"}}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return root


def test_store_adopts_an_existing_oci_layout(tmp_path: Path) -> None:
    store = Store.open(make_foreign_layout(tmp_path))
    assert store.tags() == ["x.io/adopted:1"]
    assert fsck(store).clean


def test_a_readonly_view_of_an_own_store_without_its_journal_keeps_the_tags_of_index_json(tmp_path: Path) -> None:
    """A crash while gadgetstore made its store over a layout leaves gc.lock but no journal: a read-only
    open takes the tags from index.json, and reading again (as the mount and serve poll) keeps them,
    until a writer has made the journal from them."""
    root = make_foreign_layout(tmp_path)
    (root / "gc.lock").touch()
    reader = Store.open(root, readonly=True)
    generation = reader.generation()
    reader.refresh()
    assert reader.tags() == ["x.io/adopted:1"] and reader.generation() == generation
    Store.open(root)
    assert reader.generation() != generation and reader.tags() == ["x.io/adopted:1"]


@pytest.mark.leaves_damaged_store
@pytest.mark.parametrize("layout", ['{"imageLayoutVersion":"9"}', "[" * 100_000 + "]" * 100_000])
def test_not_a_store_is_refused(tmp_path: Path, layout: str) -> None:
    (tmp_path / "oci-layout").write_text(layout)
    with pytest.raises(StoreError, match="not an OCI image layout"):
        Store.open(tmp_path)


def test_a_sync_record_nested_too_deeply_counts_as_none(store: Store, store_root: Path) -> None:
    """index.json is then rewritten from the journal, as after any other damage to the record."""
    (store_root / "index.json.sync").write_text("[" * 100_000 + "]" * 100_000)
    Store.open(store_root)
    assert json.loads((store_root / "index.json.sync").read_bytes())["journal_length"] == store.journal.length


def test_opening_ten_thousand_tags_replays_one_record_and_writes_nothing(store: Store, store_root: Path) -> None:
    """Cheap to open: a compacted journal is one snapshot record, decoded once, and an index.json in
    step is left alone (benchmarks/store_bench.py times this open)."""
    desc = blob_desc(store, "one")
    with store.transaction() as txn:
        for i in range(10_000):
            txn.tag(f"registry.example.com/gadgets/g{i}:v1", desc)
    store.compact()
    written = [os.stat(store_root / name) for name in ("index.journal", "index.json", "index.json.sync")]
    reopened = Store.open(store_root)
    assert len(reopened.tags()) == 10_000
    assert reopened.journal.transactions_since_snapshot == 1
    after = [os.stat(store_root / name) for name in ("index.journal", "index.json", "index.json.sync")]
    assert [(st.st_ino, st.st_mtime_ns) for st in after] == [(st.st_ino, st.st_mtime_ns) for st in written]


INGEST_POINTS = ["ingest.written", "ingest.synced", "ingest.renamed", "ingest.dirsynced"]
JOURNAL_POINTS = ["journal.written", "journal.synced", "index.replaced"]


@pytest.mark.parametrize("point", INGEST_POINTS + JOURNAL_POINTS)
def test_kill_at_each_crash_point_loses_nothing_reported_done(store: Store, store_root: Path, point: str) -> None:
    before = run_worker(store_root, "put-and-tag", "x.io/before:1", "first payload")
    assert before.stdout.strip() == b"DONE"
    crashed = run_worker(store_root, "put-and-tag", "x.io/after:1", "second payload", crash_at=point)
    assert crashed.returncode == -9, crashed.stderr.decode()
    assert b"DONE" not in crashed.stdout
    reopened = Store.open(store_root)
    report = fsck(reopened)
    assert report.clean, report.problems
    assert reopened.resolve("x.io/before:1").digest == Digest.of_bytes(b"first payload")
    after = reopened.lookup("x.io/after:1")
    if point in ("journal.synced", "index.replaced"):
        assert after is not None, "a synced journal record must survive"
    if after is not None:
        assert reopened.blobs.read(after.digest) == b"second payload"
    # The store stays writable and gc tidies any leftovers of the crashed ingest.
    assert run_worker(store_root, "put-and-tag", "x.io/later:1", "third payload").returncode == 0
    reopened.gc()
    assert not list(reopened.blobs.ingest_dir.iterdir())
    assert fsck(Store.open(store_root)).clean


def test_kill_during_compaction_keeps_every_tag(store: Store, store_root: Path) -> None:
    for i in range(5):
        assert run_worker(store_root, "put-and-tag", f"x.io/t:{i}", f"payload {i}").returncode == 0
    crashed = run_worker(store_root, "compact", crash_at="journal.compacted")
    assert crashed.returncode == -9
    reopened = Store.open(store_root)
    assert reopened.tags() == [f"x.io/t:{i}" for i in range(5)]
    assert fsck(reopened).clean


def test_tags_record_when_they_were_committed_across_reopen_and_compaction(store: Store, store_root: Path) -> None:
    first, second = blob_desc(store, "one"), blob_desc(store, "two")
    before = time.time_ns()
    with store.transaction() as txn:
        txn.tag("example.com/a:v1", first)
    after = time.time_ns()
    committed = store.journal.state.tag_times["example.com/a:v1"]
    assert before <= committed <= after
    with store.transaction() as txn:
        txn.tag("example.com/a:v1", first)  # a re-pull of the same image: not newer
        txn.tag("example.com/a:v2", second)
    store.compact()
    reopened = Store.open(store_root)
    assert reopened.journal.state.tag_times["example.com/a:v1"] == committed
    assert reopened.journal.state.tag_times["example.com/a:v2"] >= committed
    index = json.loads((store_root / "index.json").read_bytes())
    assert all("time_ns" not in entry for entry in index["manifests"])
