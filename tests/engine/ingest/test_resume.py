"""A killed ranged pull leaves a sparse ingest file; the next pull fetches only what is missing."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import trio

from gadgetstore.engine.ingest import resume
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.registry.stall import StallPolicy
from gadgetstore.engine.store import Store
from tests.support.fakes import FaultProxy
from tests.support.images import graph_digests, pseudo_random, verify_store
from tests.support.registry import RegistryServer, push_gadget_image

PROJECT = str(Path(__file__).resolve().parents[3])
SIZE = 3 * 1024 * 1024
CHUNK = 256 * 1024


def _opts(*hosts: str) -> TransferOptions:
    return TransferOptions(insecure_registries=frozenset(hosts), range_threshold=1024 * 1024, chunk_size=CHUNK,
                           chunk_parallelism=2)


def _range_bytes(proxy: FaultProxy) -> int:
    total = 0
    for method, path, headers in proxy.requests:
        rng = headers.get("Range")
        if method == "GET" and "/blobs/" in path and rng:
            first, last = rng.removeprefix("bytes=").split("-")
            total += int(last) - int(first) + 1
    return total


async def _pushed_layer_image(registry: RegistryServer, src: Store) -> str:
    return await push_gadget_image(registry, src, "resume", _opts(registry.host), layer_size=SIZE, archs=("amd64",))


def _ingested(root: Path) -> int:
    """The most data any ingest file under ``root`` holds (whole blocks only)."""
    most = 0
    for path in (root / "ingest").glob("*"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            most = max(most, sum(end - start for start, end in resume.data_extents(fd, os.fstat(fd).st_size)))
        finally:
            os.close(fd)
    return most


async def test_resume_from_partial_ingest(anon_registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    repo = await _pushed_layer_image(anon_registry, src)
    image = anon_registry.ref(repo, "v1")
    layer = pseudo_random(SIZE, f"{image}/amd64")

    # What a pull killed after the first 5 chunks (and part of the 6th) leaves behind.
    dst = Store.open(tmp_path / "dst")
    layer_digest = next(d for d in graph_digests(src, image) if src.blobs.stat(d).st_size == SIZE)
    writer = dst.blobs.writer(layer_digest, SIZE)
    for off in range(0, 5 * CHUNK, CHUNK):
        writer.write_at(off, layer[off:off + CHUNK])
    writer.write_at(5 * CHUNK, layer[5 * CHUNK:5 * CHUNK + 10_000])
    resume.mark_ranged(writer)
    os.utime(writer.temp_path, (0, 0))

    proxy = FaultProxy(anon_registry.host)
    try:
        await pull_image(dst, f"{proxy.host}/{repo}:v1", _opts(proxy.host))
        fetched = _range_bytes(proxy)
    finally:
        proxy.close()
    assert fetched <= SIZE - 5 * CHUNK + 8192  # the remainder plus at most a couple of blocks
    assert fetched >= SIZE - 5 * CHUNK - 10_000
    assert not writer.temp_path.exists()
    verify_store(tmp_path / "dst")


async def test_killed_pull_resumes(anon_registry: RegistryServer, tmp_path: Path) -> None:
    repo = await _pushed_layer_image(anon_registry, Store.open(tmp_path / "src"))

    proxy = FaultProxy(anon_registry.host)
    try:
        proxy.add(r"GET /v2/.*/blobs/", "delay", seconds=20, range_start=5 * CHUNK)  # chunk 5 hangs
        script = "\n".join([
            "import sys, trio",
            f"sys.path.insert(0, {PROJECT!r})",
            "from gadgetstore.engine.store import Store",
            "from gadgetstore.engine.registry.client import TransferOptions",
            "from gadgetstore.engine.registry.pull import pull_image",
            f"opts = TransferOptions(insecure_registries=frozenset({{{proxy.host!r}}}), range_threshold=1048576,"
            f" chunk_size={CHUNK}, chunk_parallelism=2)",
            f"trio.run(pull_image, Store.open({str(tmp_path / 'dst')!r}), {f'{proxy.host}/{repo}:v1'!r}, opts)",
        ])
        child = await trio.lowlevel.open_process([sys.executable, "-c", script])
        try:
            for _ in range(600):  # every chunk but the stalled 5th is on disk (however slow the machine)
                if _range_bytes(proxy) >= SIZE and _ingested(tmp_path / "dst") >= SIZE - CHUNK - resume.BLOCK:
                    break
                await trio.sleep(0.05)
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        before = _range_bytes(proxy)
        assert before >= SIZE - CHUNK  # the killed pull asked for (nearly) everything
        await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
        after = _range_bytes(proxy) - before
    finally:
        proxy.close()
    assert after <= CHUNK + 8192  # only the stalled chunk (and a block before it) is fetched again
    verify_store(tmp_path / "dst")


def test_another_writers_ingest_file_is_never_adopted(tmp_path: Path) -> None:
    """An import's sealed (not yet published) blob has no ``.ranged`` marker: resume leaves it alone."""
    from gadgetstore.engine.descriptor import Descriptor
    from gadgetstore.engine.digest import Digest
    from gadgetstore.engine.ingest.resume import find_partial

    store = Store.open(tmp_path / "s")
    data = b"sealed by an import" * 1000
    digest = Digest.of_bytes(data)
    writer = store.blobs.writer(digest, len(data))
    writer.write(data)
    writer.seal()
    assert find_partial(store.blobs, Descriptor("application/octet-stream", digest, len(data))) is None
    assert writer.temp_path.exists()
    assert writer.publish() is True


async def test_a_cancelled_pull_keeps_its_partial_for_the_next_run(anon_registry: RegistryServer,
                                                                   tmp_path: Path) -> None:
    """A --timeout or Ctrl-C cancels the pull: what was written stays in ingest/, and a re-run fetches the rest."""
    repo = await _pushed_layer_image(anon_registry, Store.open(tmp_path / "src"))
    last = SIZE - CHUNK
    proxy = FaultProxy(anon_registry.host)
    try:
        held = proxy.add(r"GET /v2/.*/blobs/", "hold", range_start=last)  # the last chunk never comes
        with trio.move_on_after(30) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pull_image, Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1",
                                   _opts(proxy.host))
                await trio.to_thread.run_sync(held.arrived.wait)
                nursery.cancel_scope.cancel()
        assert not scope.cancelled_caught
        kept = _ingested(tmp_path / "dst")
        assert kept >= CHUNK  # the chunks before the held one were written (the pull waited on the last)
        assert list((tmp_path / "dst" / "ingest").glob("*.ranged"))  # marked: a resume may adopt it
        proxy.release()
        before = _range_bytes(proxy)
        await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", _opts(proxy.host))
        fetched = _range_bytes(proxy) - before
    finally:
        proxy.close()
    assert fetched <= SIZE - kept + 2 * resume.BLOCK
    verify_store(tmp_path / "dst")


async def test_a_stalled_chunk_that_exhausts_its_retries_keeps_the_others(anon_registry: RegistryServer,
                                                                          tmp_path: Path) -> None:
    """The chunk's own retries stall too; the blob's next attempt adopts what the first one wrote."""
    repo = await _pushed_layer_image(anon_registry, Store.open(tmp_path / "src"))
    proxy = FaultProxy(anon_registry.host)
    try:
        proxy.add(r"GET /v2/.*/blobs/", "stall", at=1000, times=2, range_start=5 * CHUNK)
        options = _opts(proxy.host)
        options.retries, options.backoff_base, options.stall = 1, 0.01, StallPolicy(1024, 0.3)
        with trio.fail_after(20):
            await pull_image(Store.open(tmp_path / "dst"), f"{proxy.host}/{repo}:v1", options)
    finally:
        proxy.close()
    starts = [int(h["Range"].removeprefix("bytes=").split("-")[0]) for m, p, h in proxy.requests
              if m == "GET" and "/blobs/" in p and "Range" in h]
    assert starts.count(5 * CHUNK) == 3  # stalled, stalled again, then fetched by the blob's second attempt
    assert all(starts.count(off) == 1 for off in range(0, SIZE, CHUNK) if off != 5 * CHUNK)  # nothing else twice
    verify_store(tmp_path / "dst")
