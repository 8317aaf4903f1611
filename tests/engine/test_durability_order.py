"""The order of durable-write steps, which a SIGKILL test cannot see (the page cache survives it)."""

import os
from pathlib import Path

import pytest

from gadgetstore.engine import blobstore, fsutil, journal
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store
from tests.support.images import ArchivedImage


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    log: list[str] = []
    real_fsync, real_rename, real_replace, real_fchmod = os.fsync, os.rename, os.replace, os.fchmod

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        log.append(f"fsync:{path.parent.name}/{path.name.split('-')[0] if path.parent.name == 'ingest' else path.name}")
        real_fsync(fd)

    def rename(src: str, dst: str) -> None:
        log.append(f"rename:{Path(dst).parent.name}")
        real_rename(src, dst)

    def replace(src: str, dst: str) -> None:
        log.append(f"replace:{Path(dst).name}")
        real_replace(src, dst)

    def fchmod(fd: int, mode: int) -> None:
        log.append(f"fchmod:{oct(mode)}")
        real_fchmod(fd, mode)

    def fsync_dir(path: Path) -> None:
        log.append(f"fsync_dir:{path.name}")

    for module in (blobstore, fsutil, journal):
        monkeypatch.setattr(module.os, "fsync", fsync)
        monkeypatch.setattr(module.os, "fchmod", fchmod)
    monkeypatch.setattr(blobstore.os, "rename", rename)
    monkeypatch.setattr(fsutil.os, "replace", replace)
    monkeypatch.setattr(blobstore, "fsync_dir", fsync_dir)
    monkeypatch.setattr(fsutil, "fsync_dir", fsync_dir)
    return log


def test_blob_is_synced_read_only_then_renamed_then_dir_synced(store: Store, calls: list[str]) -> None:
    calls.clear()
    store.blobs.put(b"durable")
    assert calls == ["fsync:ingest/ingest", "fchmod:0o444", "rename:sha256", "fsync_dir:sha256"]


def test_journal_is_synced_before_index_json_is_replaced(store: Store, calls: list[str]) -> None:
    digest = store.blobs.put(b"x")
    calls.clear()
    with store.transaction() as txn:
        txn.tag("x.io/a:1", Descriptor("application/octet-stream", digest, 1))
    journal_sync = calls.index("fsync:store/index.journal")
    index_replace = calls.index("replace:index.json")
    assert journal_sync < index_replace
    assert calls[index_replace + 1] == "fsync_dir:store", "the rename of index.json is made durable at once"


def test_import_syncs_the_blob_directory_before_tagging(store: Store, calls: list[str],
                                                        gadget_image: ArchivedImage) -> None:
    from gadgetstore.engine import archive

    calls.clear()
    archive.import_archive(store, gadget_image.path)
    renames = [i for i, c in enumerate(calls) if c == "rename:sha256"]
    dir_syncs = [i for i, c in enumerate(calls) if c == "fsync_dir:sha256"]
    journal_sync = calls.index("fsync:store/index.journal")
    assert len(renames) == len(gadget_image.blobs) and len(dir_syncs) == 1, "one directory sync for the whole import"
    assert max(renames) < dir_syncs[0] < journal_sync


def test_a_transaction_syncs_the_blob_directory_before_its_record(store: Store, calls: list[str]) -> None:
    """A record may name a blob this process never renamed (another process's, or one a batch
    renamed a moment ago): its name must be durable before the record is."""
    digest = store.blobs.put(b"y")
    calls.clear()
    with store.transaction() as txn:
        txn.tag("x.io/b:1", Descriptor("application/octet-stream", digest, 1))
    assert calls.index("fsync_dir:sha256") < calls.index("fsync:store/index.journal")


def test_compacting_the_journal_syncs_its_directory_once_after_the_rename(store: Store, calls: list[str]) -> None:
    calls.clear()
    store.journal.compact()
    assert calls[-2:] == ["replace:index.journal", "fsync_dir:store"] and calls.count("fsync_dir:store") == 1



def test_a_new_store_makes_its_directories_names_durable(tmp_path: Path, calls: list[str]) -> None:
    """A blob renamed into ``blobs/sha256`` is only as durable as the names of the directories above it."""
    Store.open(tmp_path / "new")
    assert f"fsync_dir:{tmp_path.name}" in calls  # the store's own name
    # blobs/ in the store, before blobs/sha256 in blobs/ (oci-layout and index.json sync the store later)
    assert calls.index("fsync_dir:new") < calls.index("fsync_dir:blobs")


def test_a_new_blob_directory_is_synced_into_its_parent_before_its_first_blob(
        store: Store, calls: list[str]) -> None:
    calls.clear()
    data = b"x"
    store.blobs.put(data, Digest.of_bytes(data, "sha512"))
    assert calls.index("fsync_dir:blobs") < calls.index("rename:sha512")
    calls.clear()
    store.blobs.put(b"y", Digest.of_bytes(b"y", "sha512"))
    assert "fsync_dir:blobs" not in calls  # an existing directory costs nothing more
