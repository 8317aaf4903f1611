"""The pyfuse3 handlers called directly on a real store, without mounting."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pyfuse3
import pytest
import trio

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store
from gadgetstore.fusefs.adapter import LONG_TIMEOUT, MISS_REFRESH_AGE, VOLATILE_TIMEOUT, GadgetFs
from gadgetstore.fusefs.catalog import MountCatalog
from gadgetstore.fusefs.loader import StoreReader
from gadgetstore.fusefs.model import FsModel
from gadgetstore.fusefs.pulls import OnAccess, Outcome
from tests.support.igstore import tree

from .helpers import WASM_MODULE, make_gadget, tag, untag

CTX = cast(pyfuse3.RequestContext, None)
ROOT = pyfuse3.ROOT_INODE


class Recorder:
    """Stands in for the kernel's invalidation calls (made from a worker thread); ``called`` is set
    at the first, for a test to wait on."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bytes]] = []
        self.attributes: list[int] = []
        self.called = threading.Event()

    def __call__(self, entries: Sequence[tuple[int, bytes]]) -> None:
        self.calls.extend(entries)
        self.called.set()

    def inodes(self, inodes: Sequence[int]) -> None:
        self.attributes.extend(inodes)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_fs(store: Store, recorder: Recorder, on_access: OnAccess | None = None) -> GadgetFs:
    reader = StoreReader(store)
    model = FsModel(reader.snapshot() or MountCatalog(), "amd64", pull_on_access=on_access is not None)
    return GadgetFs(reader, model, invalidate=recorder, invalidate_attributes=recorder.inodes, on_access=on_access)


@pytest.fixture
def fs(store: Store, recorder: Recorder) -> GadgetFs:
    tag(store, {"localhost:5000/g:v1": make_gadget(store, "g", wasm=WASM_MODULE)})
    return make_fs(store, recorder)


async def walk(fs: GadgetFs, path: str) -> pyfuse3.EntryAttributes:
    ino = ROOT
    attrs = await fs.getattr(ROOT, CTX)
    for name in path.split("/"):
        attrs = await fs.lookup(ino, pyfuse3.FileNameT(os.fsencode(name)), CTX)
        ino = attrs.st_ino
    return attrs


async def cat(fs: GadgetFs, path: str) -> bytes:
    attrs = await walk(fs, path)
    info = await fs.open(attrs.st_ino, os.O_RDONLY, CTX)
    assert info.keep_cache
    try:
        chunks = []
        offset = 0
        while chunk := await fs.read(info.fh, offset, 7):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    finally:
        await fs.release(info.fh)


async def test_attributes_and_timeouts(fs: GadgetFs, store: Store) -> None:
    image = await walk(fs, "localhost:5000/g/v1")
    assert stat.S_ISDIR(image.st_mode) and image.st_mode & 0o777 == 0o555
    assert image.entry_timeout == image.attr_timeout == LONG_TIMEOUT
    program = await walk(fs, "localhost:5000/g/v1/program.wasm")
    assert stat.S_ISREG(program.st_mode) and program.st_mode & 0o777 == 0o444
    assert program.st_size == len(WASM_MODULE)
    blob = await walk(fs, f".store/blobs/sha256/{store.blobs.path(store.lookup('localhost:5000/g:v1').digest).name}")  # type: ignore[union-attr]
    assert blob.entry_timeout == VOLATILE_TIMEOUT
    again = await fs.getattr(program.st_ino, CTX)
    assert (again.st_ino, again.st_size) == (program.st_ino, program.st_size)


async def test_reads_match_the_store(fs: GadgetFs, store: Store) -> None:
    root = store.lookup("localhost:5000/g:v1")
    assert root is not None
    assert await cat(fs, "localhost:5000/g/v1/digest") == f"{root.digest}\n".encode()
    assert await cat(fs, "localhost:5000/g/v1/index.json") == store.blobs.read(root.digest)
    assert await cat(fs, "localhost:5000/g/v1/program.wasm") == WASM_MODULE
    assert await cat(fs, "localhost:5000/g/v1/extra-info/oci.repository") == b"localhost:5000/g\n"


async def test_writes_are_refused(fs: GadgetFs) -> None:
    attrs = await walk(fs, "localhost:5000/g/v1/digest")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_APPEND):
        with pytest.raises(pyfuse3.FUSEError) as err:
            await fs.open(attrs.st_ino, flags, CTX)
        assert err.value.errno == errno.EROFS
    for handler in (fs.mkdir, fs.unlink, fs.rmdir, fs.rename, fs.setattr, fs.write, fs.create, fs.symlink, fs.link):
        with pytest.raises(pyfuse3.FUSEError) as err:
            await handler(ROOT, b"x", CTX)  # type: ignore[operator]
        assert err.value.errno == errno.EROFS


async def test_unknown_inodes_and_names(fs: GadgetFs) -> None:
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.getattr(pyfuse3.InodeT(12345), CTX)
    assert err.value.errno == errno.ENOENT
    with pytest.raises(pyfuse3.FUSEError) as err:
        await walk(fs, "localhost:5000/nope")
    assert err.value.errno == errno.ENOENT
    file = await walk(fs, "localhost:5000/g/v1/digest")
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.lookup(file.st_ino, pyfuse3.FileNameT(b"x"), CTX)
    assert err.value.errno == errno.ENOTDIR


async def test_lookup_counts_and_forget(fs: GadgetFs) -> None:
    attrs = await walk(fs, "localhost:5000/g/v1/digest")
    await walk(fs, "localhost:5000/g/v1/digest")
    assert fs.table.nlookup(attrs.st_ino) == 2
    await fs.forget([(attrs.st_ino, 2)])
    assert attrs.st_ino not in fs.table
    assert (await walk(fs, "localhost:5000/g/v1/digest")).st_ino == attrs.st_ino


@pytest.mark.leaves_damaged_store
async def test_damaged_blob_is_eio_and_the_rest_reads(fs: GadgetFs, store: Store) -> None:
    program = (await walk(fs, "localhost:5000/g/v1/program.wasm"))
    node = fs.table.node(program.st_ino)
    assert node.blob is not None
    path = store.blobs.path(node.blob)
    os.chmod(path, 0o644)
    path.write_bytes(WASM_MODULE.replace(b"asm", b"ASM"))
    with pytest.raises(pyfuse3.FUSEError) as err:
        await cat(fs, "localhost:5000/g/v1/program.wasm")
    assert err.value.errno == errno.EIO
    assert await cat(fs, "localhost:5000/g/v1/metadata.yaml") == b"name: g\ndescription: test gadget\n"


async def test_open_file_survives_removal(fs: GadgetFs, store: Store) -> None:
    attrs = await walk(fs, "localhost:5000/g/v1/program.wasm")
    info = await fs.open(attrs.st_ino, os.O_RDONLY, CTX)
    assert store.remove_image("localhost:5000/g:v1")
    await fs.refresh()
    assert await fs.read(info.fh, 0, 100) == WASM_MODULE
    await fs.release(info.fh)


async def test_changes_queue_invalidations(fs: GadgetFs, store: Store, recorder: Recorder) -> None:
    v1 = await walk(fs, "localhost:5000/g/v1")
    parent = await walk(fs, "localhost:5000/g")
    untag(store, "localhost:5000/g:v1")
    tag(store, {"localhost:5000/h:v2": make_gadget(store, "h")})
    await fs.refresh()
    await fs.flush_invalidations()
    assert (parent.st_ino, b"v1") in recorder.calls
    assert all(ino != ROOT for ino, _ in recorder.calls)  # root's "localhost:5000" stays valid
    assert v1.st_ino in fs.table  # the kernel may still hold it (cwd, open files)
    await walk(fs, "localhost:5000/h/v2/digest")


async def test_lookup_miss_rereads_the_journal(fs: GadgetFs, store: Store, mock_clock: trio.testing.MockClock) -> None:
    with pytest.raises(pyfuse3.FUSEError):
        await walk(fs, "example.com")  # a miss: the journal is read again, and has no such image yet
    tag(store, {"example.com/new:v1": make_gadget(store, "new")})
    mock_clock.jump(MISS_REFRESH_AGE)
    assert (await walk(fs, "example.com/new/v1/created")).st_size > 0


async def test_poller_keeps_running(fs: GadgetFs, store: Store, recorder: Recorder) -> None:
    await walk(fs, "localhost:5000/g/v1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fs.poll_journal, 0.01)
        nursery.start_soon(fs.send_invalidations)
        untag(store, "localhost:5000/g:v1")
        assert await trio.to_thread.run_sync(recorder.called.wait, 30), "no invalidation was sent"
        nursery.cancel_scope.cancel()


def test_reader_snapshot_only_on_change(store: Store, tmp_path: Path) -> None:
    reader = StoreReader(store)
    assert reader.snapshot() is not None
    assert reader.snapshot() is None
    tag(store, {"example.com/x:v1": make_gadget(store, "x")})
    catalog = reader.snapshot()
    assert catalog is not None and ("example.com", "x", "v1") in catalog.images


async def test_reading_extra_info_writes_nothing_into_the_store(fs: GadgetFs, store: Store, tmp_path: Path) -> None:
    """A read-only mount analyses layers and caches the results outside the store."""
    before = tree(store.root)
    assert (await cat(fs, "localhost:5000/g/v1/extra-info/ebpf.maps")).startswith(b"[")
    assert tree(store.root) == before
    assert any(path.suffix == ".extra" for path in (tmp_path / "xdg-cache").rglob("*"))


async def test_undecodable_layer_fails_only_extra_info(store: Store) -> None:
    tag(store, {"example.com/bad:v1": make_gadget(store, "bad", program=b"\x7fELF-truncated")})
    fs = make_fs(store, Recorder())
    with pytest.raises(pyfuse3.FUSEError) as err:
        await walk(fs, "example.com/bad/v1/extra-info/oci.tag")
    assert err.value.errno == errno.EIO
    assert await cat(fs, "example.com/bad/v1/program.bpf.o") == b"\x7fELF-truncated"


async def test_by_digest_manifest_keeps_its_architecture(fs: GadgetFs, store: Store) -> None:
    root = store.lookup("localhost:5000/g:v1")
    assert root is not None
    arm = next(m for m in store.read_document(root)["manifests"] if m["platform"]["architecture"] == "arm64")
    hexpart = arm["digest"].split(":")[1]
    assert (await walk(fs, f".store/by-digest/sha256/{hexpart}/arch/arm64/digest")).st_size == len(arm["digest"]) + 1
    with pytest.raises(pyfuse3.FUSEError):
        await walk(fs, f".store/by-digest/sha256/{hexpart}/arch/amd64")
    # The host is amd64 here, but an arm64 manifest has no host files: only digest, created, index.json, arch.
    with pytest.raises(pyfuse3.FUSEError):
        await walk(fs, f".store/by-digest/sha256/{hexpart}/manifest.json")
    assert await cat(fs, f".store/by-digest/sha256/{hexpart}/arch/arm64/manifest.json") == store.blobs.read(
        Digest.parse(arm["digest"])
    )


@pytest.mark.parametrize("blob", [b'{"schemaVersion":2,"manifests":{}}', b'{"layers":[],"config":{}}',
                                  b'{"schemaVersion":2,"mediaType":"application/json","manifests":[]}'])
async def test_by_digest_shows_no_blob_that_only_looks_like_a_document(fs: GadgetFs, store: Store,
                                                                       blob: bytes) -> None:
    """Any digest may be looked up under by-digest; a blob is an image there only when it is a
    manifest or index a pull or an import would take (the same check), not when it has their keys."""
    hexpart = store.blobs.put(blob).hex
    with pytest.raises(pyfuse3.FUSEError) as err:
        await walk(fs, f".store/by-digest/sha256/{hexpart}")
    assert err.value.errno == errno.ENOENT


async def test_poller_survives_a_failing_snapshot(
    fs: GadgetFs, store: Store, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = fs.reader.snapshot
    calls = 0

    def flaky() -> MountCatalog | None:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ValueError("unknown journal operation 'frob'")
        return real()

    monkeypatch.setattr(fs.reader, "snapshot", flaky)
    await walk(fs, "localhost:5000/g/v1")
    untag(store, "localhost:5000/g:v1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fs.poll_journal, 0.01)
        nursery.start_soon(fs.send_invalidations)
        assert await trio.to_thread.run_sync(recorder.called.wait, 30), "no invalidation was sent"
        nursery.cancel_scope.cancel()
    assert sum("cannot re-read the journal" in r.message for r in caplog.records) == 1


async def listing(fs: GadgetFs, ino: int) -> list[tuple[str, int]]:
    """(name, inode) of every entry, as the kernel's READDIRPLUS would receive them."""
    replies: list[tuple[str, int]] = []

    def reply(token: object, name: bytes, attrs: pyfuse3.EntryAttributes, next_id: int) -> bool:
        replies.append((os.fsdecode(name), attrs.st_ino))
        return True

    fh = await fs.opendir(pyfuse3.InodeT(ino), CTX)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pyfuse3, "readdir_reply", reply)
        await fs.readdir(fh, 0, cast(pyfuse3.ReaddirToken, None))
    await fs.releasedir(fh)
    return replies


async def test_listings_start_with_dot_and_dotdot_without_taking_lookups(fs: GadgetFs) -> None:
    image = await walk(fs, "localhost:5000/g/v1")
    repo = await walk(fs, "localhost:5000/g")
    counts = (fs.table.nlookup(image.st_ino), fs.table.nlookup(repo.st_ino))
    entries = await listing(fs, image.st_ino)
    assert entries[:2] == [(".", image.st_ino), ("..", repo.st_ino)]
    assert [name for name, _ in entries[2:]] == sorted(name for name, _ in entries[2:])
    assert (fs.table.nlookup(image.st_ino), fs.table.nlookup(repo.st_ino)) == counts  # the kernel links neither
    assert (await listing(fs, ROOT))[:2] == [(".", ROOT), ("..", ROOT)]


async def test_a_new_tag_refreshes_the_time_of_the_directories_above_it(fs: GadgetFs, store: Store,
                                                                       recorder: Recorder) -> None:
    registry = await walk(fs, "localhost:5000")
    before = registry.st_mtime_ns
    tag(store, {"localhost:5000/h:v2": make_gadget(store, "h")})
    await fs.refresh()
    await fs.flush_invalidations()
    assert recorder.attributes == [registry.st_ino]  # the kernel asks for its attributes again
    after = await fs.getattr(registry.st_ino, CTX)
    assert after.st_mtime_ns == store.journal.state.tag_times["localhost:5000/h:v2"] != before


async def test_pull_on_access_through_the_handlers(fs: GadgetFs, store: Store, recorder: Recorder) -> None:
    asked: list[tuple[str, bool]] = []

    async def fetch(image: str, may_be_prefix: bool) -> Outcome:
        asked.append((image, may_be_prefix))
        if image == "localhost:5000/g:deeper":
            return Outcome.PREFIX
        if image != "localhost:5000/fresh:v1":
            return Outcome.ABSENT
        tag(store, {image: make_gadget(store, "fresh")})  # what a pull leaves behind
        return Outcome.PULLED

    pulling = make_fs(store, recorder, OnAccess(fetch))
    pending = await walk(pulling, "example.org")  # a registry the store has never seen: no fetch yet
    assert stat.S_ISDIR(pending.st_mode) and pending.entry_timeout == pending.attr_timeout == VOLATILE_TIMEOUT
    with pytest.raises(pyfuse3.FUSEError) as err:
        await pulling.opendir(pending.st_ino, CTX)  # nothing is there to list
    assert err.value.errno == errno.ENOENT
    image = await walk(pulling, "localhost:5000/fresh/v1")
    assert stat.S_ISDIR(image.st_mode) and image.entry_timeout == LONG_TIMEOUT
    assert await cat(pulling, "localhost:5000/fresh/v1/metadata.yaml") == b"name: fresh\ndescription: test gadget\n"
    assert (await walk(pulling, "localhost:5000/g/deeper")).entry_timeout == VOLATILE_TIMEOUT
    for missing in ("localhost:5000/g/v9", "trace_nope/v1", "localhost:5000/g/v1/nope"):
        with pytest.raises(pyfuse3.FUSEError) as err:
            await walk(pulling, missing)
        assert err.value.errno == errno.ENOENT
    assert asked == [("localhost:5000/fresh:v1", True), ("localhost:5000/g:deeper", True),
                     ("localhost:5000/g:v9", True),
                     ("ghcr.io/inspektor-gadget/gadget/trace_nope:v1", False)]  # and nothing inside an image
    with pytest.raises(pyfuse3.FUSEError):
        await walk(fs, "localhost:5000/other/v1")  # without pull on access, a miss is a miss
