import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.blobstore import BlobNotFound, BlobStore
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import DigestMismatch, IntegrityError, StoreError
from gadgetstore.engine.store import Store

WORKER = Path(__file__).with_name("store_worker.py")


def test_put_is_read_only_verified_and_deduplicated(store: Store) -> None:
    digest = store.blobs.put(b"hello")
    path = store.blobs.path(digest)
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    inode = path.stat().st_ino
    assert store.blobs.put(b"hello") == digest
    assert path.stat().st_ino == inode, "an existing blob must not be written again"
    assert not list(store.blobs.ingest_dir.iterdir())


def _ingest(store: Store, chunks: list[bytes], expected: Digest, expected_size: int) -> None:
    with store.blobs.writer(expected, expected_size) as writer:
        for chunk in chunks:
            writer.write(chunk)
        writer.commit()


def test_wrong_digest_or_size_publishes_nothing(store: Store) -> None:
    wrong = Digest.of_bytes(b"other")
    with pytest.raises(DigestMismatch):
        _ingest(store, [b"hello"], wrong, 5)
    with pytest.raises(IntegrityError):
        _ingest(store, [b"hel", b"lo!"], Digest.of_bytes(b"hello!"), 5)
    with pytest.raises(IntegrityError):
        _ingest(store, [b"hell"], Digest.of_bytes(b"hello"), 5)
    assert list(store.blobs.iter_digests()) == []
    assert not list(store.blobs.ingest_dir.iterdir()), "failed ingests must clean up their temp files"


def test_blob_is_invisible_until_commit(store: Store) -> None:
    data = b"x" * 10_000
    digest = Digest.of_bytes(data)
    with store.blobs.writer(digest, len(data)) as writer:
        writer.write(data[:5000])
        assert not store.blobs.has(digest)
        writer.write(data[5000:])
        writer.seal()
        assert not store.blobs.has(digest), "sealed but unpublished blobs stay in ingest/"
        writer.publish()
    assert store.blobs.read(digest) == data


def test_out_of_order_chunks_are_rehashed_at_commit(store: Store) -> None:
    data = bytes(range(256)) * 100
    digest = Digest.of_bytes(data)
    with store.blobs.writer(digest, len(data)) as writer:
        writer.write_at(12_800, data[12_800:])
        writer.write_at(0, data[:12_800])
        writer.commit()
    assert store.blobs.read(digest) == data
    bad = bytearray(data)
    bad[7] ^= 1
    with store.blobs.writer(Digest.of_bytes(b"nope"), len(data)) as writer, pytest.raises(DigestMismatch):
        writer.write_at(0, bytes(bad))
        writer.commit()


@pytest.mark.leaves_damaged_store
def test_damaged_blob_is_reported_on_read(store: Store) -> None:
    digest = store.blobs.put(b"manifest bytes")
    path = store.blobs.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"manifest bytez")
    with pytest.raises(DigestMismatch):
        store.blobs.read(digest)
    assert store.blobs.rehash(digest) != digest


@pytest.mark.leaves_damaged_store
def test_symlinked_blob_is_refused(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"secret")
    digest = Digest.of_bytes(b"secret")
    os.symlink(target, store.blobs.path(digest))
    assert not store.blobs.has(digest)
    with pytest.raises(StoreError):
        store.blobs.open(digest)


def test_missing_blob_is_a_clear_error(store: Store) -> None:
    with pytest.raises(BlobNotFound, match="not in the store"):
        store.blobs.read(Digest.of_bytes(b"absent"))


def test_symlinked_store_directories_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "ingest")
    with pytest.raises(StoreError, match="symlinks are refused"):
        Store.open(root)


def test_two_processes_ingesting_the_same_digest_both_succeed(store: Store, store_root: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(store_root), "ingest-same", "abc"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        assert out.strip() == b"DONE"
    data = b"abc" * 200_000
    assert [str(d) for d in store.blobs.iter_digests()] == [str(Digest.of_bytes(data))]
    assert store.blobs.read(Digest.of_bytes(data)) == data
    assert not list(store.blobs.ingest_dir.iterdir())


async def test_concurrent_ingest_from_trio_threads(store: Store) -> None:
    """Many blobs committed concurrently from worker threads, with duplicates among them."""
    payloads = [f"blob-{i % 40}".encode() * 1000 for i in range(120)]
    limiter = trio.CapacityLimiter(8)
    async with trio.open_nursery() as nursery:
        for data in payloads:
            nursery.start_soon(lambda d=data: trio.to_thread.run_sync(store.blobs.put, d, limiter=limiter))
    assert len(list(store.blobs.iter_digests())) == 40
    for data in set(payloads):
        assert store.blobs.read(Digest.of_bytes(data)) == data


def test_blob_store_never_builds_paths_from_unchecked_strings(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    assert blobs.path(Digest.parse("sha256:" + "0" * 64)) == tmp_path / "blobs" / "sha256" / ("0" * 64)
