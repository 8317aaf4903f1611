"""BatchedPublisher: small blobs (a pull's) are made durable in batches. Per blob the order must stay
the one a single commit keeps: bytes durable before the name appears, the name durable before
any tag refers to it; and a batch that fails leaves nothing visible and nothing behind."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
import trio

from gadgetstore.engine import blobstore, journal
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import DigestMismatch
from gadgetstore.engine.ingest import batched
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.signatures.locate import signature_artifacts
from gadgetstore.engine.signatures.sign import sign_image
from gadgetstore.engine.signatures.signing_keys import generate_private_key
from gadgetstore.engine.store import Store
from tests.support.images import make_gadget_image, pseudo_random, verify_store
from tests.support.registry import RegistryServer, unique_repo

BLOBS = [pseudo_random(5000 + i, f"publish-{i}") for i in range(6)]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "s")


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The durable steps in order: syncfs, per-file fsync, rename, directory fsync, journal append."""
    log: list[str] = []
    real_sync, real_fsync_dir = batched.sync_filesystem, batched.fsync_dir
    real_rename, real_fsync, real_append = os.rename, os.fsync, journal.Journal.append

    def sync_filesystem(path: Path) -> bool:
        log.append("syncfs")
        return real_sync(path)

    def fsync_dir(path: Path) -> None:
        log.append(f"fsync_dir:{path.name}")
        real_fsync_dir(path)

    def rename(src: str, dst: str) -> None:
        log.append("rename")
        real_rename(src, dst)

    def fsync(fd: int) -> None:  # a file in ingest/: a commit's own fsync, or the fallback's
        if Path(os.readlink(f"/proc/self/fd/{fd}")).parent.name == "ingest":
            log.append("fsync_file")
        real_fsync(fd)

    def append(self: journal.Journal, ops: list[object]) -> None:
        log.append("journal")
        real_append(self, ops)  # type: ignore[arg-type]

    monkeypatch.setattr(batched, "sync_filesystem", sync_filesystem)
    monkeypatch.setattr(batched, "fsync_dir", fsync_dir)
    monkeypatch.setattr(blobstore.os, "rename", rename)
    monkeypatch.setattr(blobstore.os, "fsync", fsync)
    monkeypatch.setattr(journal.Journal, "append", append)
    return log


async def _put_all(store: Store, blobs: list[bytes]) -> None:
    publisher = store.ingest.batches  # the store's own: what every producer's batches go through
    async with trio.open_nursery() as nursery:
        for data in blobs:
            nursery.start_soon(publisher.put, data, Digest.of_bytes(data))


async def test_a_batch_is_synced_once_then_renamed_then_its_directory_synced(store: Store,
                                                                            steps: list[str]) -> None:
    await _put_all(store, BLOBS)
    assert all(store.blobs.has(Digest.of_bytes(data)) for data in BLOBS)
    assert "fsync_file" not in steps  # no blob paid its own fsync
    # every rename comes after a syncfs of its batch, and each batch ends with one directory fsync
    assert re.fullmatch(r"(syncfs(,rename)+,fsync_dir:sha256,?)+", ",".join(steps) + ","), steps
    assert steps.count("syncfs") < len(BLOBS)  # batched: fewer syncs than blobs
    verify_store(store.root)


async def test_without_syncfs_each_file_is_synced_before_any_rename(store: Store, steps: list[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batched, "sync_filesystem", lambda path: steps.append("syncfs-missing") or False)
    await _put_all(store, BLOBS)
    assert re.fullmatch(r"(syncfs-missing(,fsync_file)+(,rename)+,fsync_dir:sha256,?)+",
                        ",".join(steps) + ","), steps
    assert steps.count("fsync_file") == steps.count("rename") == len(BLOBS)
    verify_store(store.root)


async def test_a_failed_sync_publishes_nothing_and_leaves_nothing(store: Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> bool:
        raise OSError(errno.EIO, "syncfs failed")

    monkeypatch.setattr(batched, "sync_filesystem", broken)
    with pytest.raises(ExceptionGroup) as info:
        await _put_all(store, BLOBS[:3])
    assert all(isinstance(err, OSError) for err in info.value.exceptions)
    assert not any(store.blobs.has(Digest.of_bytes(data)) for data in BLOBS[:3])
    assert store.blobs.ingest_files() == []


async def test_wrong_bytes_are_refused_before_they_are_staged(store: Store) -> None:
    with pytest.raises(DigestMismatch):
        await store.ingest.put_batched(BLOBS[0], Digest.of_bytes(BLOBS[1]))
    assert store.blobs.ingest_files() == []
    assert not store.blobs.has(Digest.of_bytes(BLOBS[1]))


async def test_a_pull_tags_only_after_its_blobs_are_durable(anon_registry: RegistryServer, tmp_path: Path,
                                                            steps: list[str]) -> None:
    src = Store.open(tmp_path / "src")
    image = anon_registry.ref(unique_repo("publish"), "v1")
    make_gadget_image(src, image)
    options = TransferOptions(insecure_registries=frozenset({anon_registry.host}))
    await push_image(src, image, options)
    steps.clear()
    await pull_image(Store.open(tmp_path / "dst"), image, options)
    journal_at = steps.index("journal")
    assert "rename" in steps and max(i for i, s in enumerate(steps) if s == "rename") < journal_at
    last_rename = max(i for i, s in enumerate(steps) if s == "rename")
    assert "fsync_dir:sha256" in steps[last_rename:journal_at]  # the last names are durable before the tag
    assert "fsync_file" not in steps[:journal_at]  # the pull's blobs went through the batches
    verify_store(tmp_path / "dst")


async def test_a_failed_rename_fails_only_its_blob(store: Store, steps: list[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bad = Digest.of_bytes(BLOBS[2])
    real_publish = blobstore.IngestWriter.publish

    def publish_or_fail(self: blobstore.IngestWriter, sync_dir: bool = True) -> bool:
        if self.digest == bad:
            raise OSError(errno.EIO, "rename failed")
        return real_publish(self, sync_dir)

    monkeypatch.setattr(blobstore.IngestWriter, "publish", publish_or_fail)
    results: dict[Digest, str] = {}
    publisher = store.ingest.batches

    async def put(data: bytes) -> None:
        try:
            await publisher.put(data, Digest.of_bytes(data))
            results[Digest.of_bytes(data)] = "ok"
        except OSError:
            results[Digest.of_bytes(data)] = "failed"

    # keep batches out until every blob waits for one: a single batch of all, whatever the timing
    all_waiting, real_submit = trio.Event(), publisher._group.submit
    submitted: list[blobstore.IngestWriter] = []

    async def submit(writer: blobstore.IngestWriter) -> None:
        submitted.append(writer)
        if len(submitted) == len(BLOBS):
            all_waiting.set()  # seen once this task blocks, after real_submit queued its item
        await real_submit(writer)

    monkeypatch.setattr(publisher._group, "submit", submit)
    async with trio.open_nursery() as nursery, publisher._group.lock:
        for data in BLOBS:
            nursery.start_soon(put, data)
        await all_waiting.wait()
    assert [d for d, r in results.items() if r == "failed"] == [bad]
    assert all(store.blobs.has(Digest.of_bytes(data)) for data in BLOBS if Digest.of_bytes(data) != bad)
    assert not store.blobs.has(bad)
    assert store.blobs.ingest_files() == []  # the failed blob's file was removed
    # one batch: its other names landed, and were made durable after the failure
    assert steps == ["syncfs"] + ["rename"] * (len(BLOBS) - 1) + ["fsync_dir:sha256"]


async def test_bytes_that_fail_to_verify_fail_only_their_own_put(store: Store) -> None:
    publisher = store.ingest.batches
    wrong = Digest.of_bytes(b"not these bytes")
    results: dict[str, str] = {}

    async def put(name: str, data: bytes, digest: Digest) -> None:
        try:
            await publisher.put(data, digest)
            results[name] = "ok"
        except DigestMismatch:
            results[name] = "mismatch"

    async with trio.open_nursery() as nursery:
        for i, data in enumerate(BLOBS):
            nursery.start_soon(put, f"good{i}", data, Digest.of_bytes(data))
        nursery.start_soon(put, "bad", BLOBS[0], wrong)
    assert results.pop("bad") == "mismatch"
    assert set(results.values()) == {"ok"}
    assert all(store.blobs.has(Digest.of_bytes(data)) for data in BLOBS)
    assert not store.blobs.has(wrong)
    assert store.blobs.ingest_files() == []


async def test_a_pulled_signature_is_made_durable_in_the_batches_before_it_is_recorded(
        anon_registry: RegistryServer, tmp_path: Path, steps: list[str]) -> None:
    """The signature manifest of a signed image goes through the store's batches like the image's
    own blobs: no blob of the pull pays its own fsync, and every name is durable before the first
    record (the signature's, then the image's tag)."""
    src = Store.open(tmp_path / "src")
    image = anon_registry.ref(unique_repo("publish-signed"), "v1")
    make_gadget_image(src, image)
    sign_image(src, image, generate_private_key("ecdsa-p256"), "legacy")
    options = TransferOptions(insecure_registries=frozenset({anon_registry.host}))
    await push_image(src, image, options)
    steps.clear()
    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, options)
    assert result.signatures == 1
    assert result.descriptor is not None and len(signature_artifacts(dst, result.descriptor.digest)) == 1
    first_record = steps.index("journal")
    assert steps.count("journal") == 2  # the signature's tag, then the image's
    assert "fsync_file" not in steps  # the signature manifest too went through the batches
    last_rename = max(i for i, s in enumerate(steps) if s == "rename")
    assert last_rename < first_record and "fsync_dir:sha256" in steps[last_rename:first_record]
    verify_store(tmp_path / "dst")


async def test_pulls_with_sessions_of_their_own_share_the_stores_batches(anon_registry: RegistryServer,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest belongs to the store, not to an HTTP session: while the store's batches are held,
    two pulls into it (each with a session of its own) both wait on them with their first blob."""
    src = Store.open(tmp_path / "src")
    options = TransferOptions(insecure_registries=frozenset({anon_registry.host}))
    images = [anon_registry.ref(unique_repo(f"publish-shared{i}"), "v1") for i in range(2)]
    roots = set()
    for i, image in enumerate(images):
        roots.add(make_gadget_image(src, image, seed=f"shared{i}").digest)
        await push_image(src, image, options)
    dst = Store.open(tmp_path / "dst")
    publisher = dst.ingest.batches
    held: list[Digest] = []
    both_waiting, real_put = trio.Event(), publisher.put

    async def put(data: bytes | bytearray, digest: Digest) -> None:
        held.append(digest)
        if len(held) == 2:
            both_waiting.set()
        await real_put(data, digest)

    monkeypatch.setattr(publisher, "put", put)
    with trio.fail_after(60):  # a guard only: the pulls are ordered by the events
        async with trio.open_nursery() as nursery, publisher._group.lock:
            for image in images:
                nursery.start_soon(pull_image, dst, image, options)
            await both_waiting.wait()
            assert set(held) == roots  # each pull's root manifest, in the one store's queue
    assert all(dst.lookup(str(normalize(image))) is not None for image in images)
    verify_store(tmp_path / "dst")
