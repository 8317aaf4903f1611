"""Downloading one blob into the store, verified at commit.

Small blobs are read into memory (growing only with received bytes, capped at the declared size)
and verified in one thread call. Larger ones stream into an ingest file. Both are made durable and
published in batches with the pull's other small blobs (:mod:`.publish`). Above the range
threshold, the blob is fetched with Range requests into a sparse ingest file: on a big blob the
first chunk is a probe, and when it arrived fast (a loopback or LAN registry) the rest comes as
one stream, else as chunks fetched in parallel; if the registry answers the first Range with a
plain 200, the whole body is streamed instead. Batches are written one at a time in a worker
thread, and the ingest writer hashes each one that continues the hashed prefix while writing it;
bytes that landed ahead are read back from the file once the prefix reaches them. Nothing becomes
visible before the digest of the whole file matches. A ranged blob's bodies are received straight
into a few page-aligned batch buffers that are reused (:class:`_Buffers`) and written to disk with
``O_DIRECT`` (no copy into the page cache, no writeback later): a buffer goes back only once the
write and the hash of its bytes are done.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Callable
from concurrent.futures import Future

import trio

from ..blobstore import IngestWriter
from ..descriptor import Descriptor
from ..errors import DigestMismatch, IntegrityError
from ..store import Store
from . import resume
from .client import RegistryClient
from .errors import RegistryError, TransportError
from .http import BodyTooLarge, Response
from .tasks import task_group

IN_MEMORY_LIMIT = 1024 * 1024
WRITE_BUFFER = 1024 * 1024
# Ranged blobs hand the writer thread batches of STREAM_BATCH bytes from a single stream, of
# CHUNK_BATCH from each of several parallel ones; at most SINK_DEPTH wait. Bigger batches (fewer
# thread hops and wake-ups) measured faster; in flight are the receivers' batches, the queued ones,
# the one being written and the one still being hashed (blobstore.HASH_BACKLOG): for one stream
# 4 × 8 MiB, for 4 parallel chunks (and the first answer) 8 × 2 MiB: inside the budget of
# 64 MiB + chunk size × parallelism (8 MiB × 4) with ~39 MiB for the interpreter and its modules.
SINK_DEPTH = 1
STREAM_BATCH = 8 * 1024 * 1024
CHUNK_BATCH = 2 * 1024 * 1024
SYNC_EVERY = 32 * 1024 * 1024  # buffered ranged writes: start writeback after this many new bytes (measured best)
PROBE_MIN_CHUNK = 4 * 1024 * 1024  # a rate measured over fewer bytes says little (TTFB, slow start)
PROBE_MIN_SIZE = 64 * 1024 * 1024  # smaller blobs start all chunks at once: no time to lose on a probe
# bytes/s (~1 Gbit/s): one stream this fast is not what limits the pull, and parallel streams would
# only add requests and CPU; loopback probes measured 650-980 MiB/s, a WAN stream brings 10-100.
STREAM_RATE = 128 * 1024 * 1024
_CONTENT_RANGE_RE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)")
WriteAt = Callable[[int, bytes], None]


class _ChunkError(RegistryError):
    """A Range answer we cannot use; the blob is fetched again from scratch."""


async def _blob_request(client: RegistryClient, repo: str, desc: Descriptor, first: int | None = None,
                        last: int | None = None) -> Response:
    headers: list[tuple[str, str]] = []
    ok: tuple[int, ...] = (200,)
    if first is not None:
        headers.append(("Range", f"bytes={first}-{last}"))
        ok = (200, 206)
    return await client.request(
        "GET", f"/v2/{repo}/blobs/{desc.digest}", scopes=(f"repository:{repo}:pull",), headers=headers, ok=ok,
        what=f"blob {desc.digest} of {client.domain}/{repo}",
    )


def _write_pieces(write_at: WriteAt, pos: int, pieces: list[bytes]) -> None:
    """One thread hop for a buffer's worth of pieces, written one by one (no joined copy)."""
    for piece in pieces:
        write_at(pos, piece)
        pos += len(piece)


async def _sequential_into(write_at: WriteAt, resp: Response, start: int, end: int, label: str) -> int:
    """Stream ``resp`` to offsets [start, end) with buffered ``write_at`` calls; returns the next offset."""
    pos = start
    buf: list[bytes] = []
    buffered = 0
    async for chunk in resp.iter_chunks():
        if pos + buffered + len(chunk) > end:
            await resp.aclose()
            raise IntegrityError(f"{label}: registry sent more bytes than expected")
        buf.append(chunk)
        buffered += len(chunk)
        if buffered >= WRITE_BUFFER:
            await trio.to_thread.run_sync(_write_pieces, write_at, pos, buf)
            pos += buffered
            buf, buffered = [], 0
    if buf:
        await trio.to_thread.run_sync(_write_pieces, write_at, pos, buf)
        pos += buffered
    return pos


def coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent (start, end) ranges joined: each run is then one request of a streamed fetch."""
    runs: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def clip(ranges: list[tuple[int, int]], pos: int) -> list[tuple[int, int]]:
    """What of ``ranges`` lies at or after ``pos``."""
    return [(max(start, pos), end) for start, end in ranges if end > pos]


class _Buffers:
    """At most ``count`` reusable buffers of ``size`` bytes, allocated when first needed.

    Reuse is the point: a fresh buffer per read costs a page fault per 4 KiB, about a third of
    the cost of receiving the bytes. Buffers are anonymous mappings, so they start on a page and
    the ingest writer can send them to disk with ``O_DIRECT``. Taking one waits while all are in
    use, which also bounds what is in flight. :meth:`give_back` is called from the Trio thread only."""

    def __init__(self, size: int, count: int) -> None:
        self.size = size
        self._free: list[mmap.mmap] = []
        self._slots = trio.Semaphore(count)

    async def take(self) -> mmap.mmap:
        await self._slots.acquire()
        return self._free.pop() if self._free else mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE)

    def give_back(self, buf: mmap.mmap) -> None:
        self._free.append(buf)
        self._slots.release()


class _Sink:
    """Every write of one ranged blob, in one task and one thread call at a time.

    The socket reads go on while a batch is written and hashed in a worker thread (both release
    the GIL). One writer at a time because concurrent ``pwrite`` calls to one file only spin on its
    inode lock, and because in-order batches then extend the running hash without a read-back.
    The queue is bounded (``SINK_DEPTH`` batches), so the receivers wait when the disk or the hash
    cannot keep up.
    """

    def __init__(self, writer: IngestWriter, sync_fd: int, parallelism: int) -> None:
        self._writer = writer
        self._sync_fd = sync_fd
        self._send, self._receive = trio.open_memory_channel[_Batch](SINK_DEPTH)
        self._synced_upto = 0  # the writer's buffered_bytes when the last background sync started
        self._syncing = False
        self._token = trio.lowlevel.current_trio_token()
        self._pools: dict[int, _Buffers] = {}
        self._parallelism = parallelism
        self.written = 0

    def buffers(self, size: int) -> _Buffers:
        """The buffers for batches of ``size``: one per receiver, plus the one queued, the one
        being written and the one still being hashed (``blobstore.HASH_BACKLOG``)."""
        pool = self._pools.get(size)
        if pool is None:
            receivers = 1 if size >= STREAM_BATCH else self._parallelism + 1  # + the first answer
            pool = self._pools[size] = _Buffers(size, receivers + SINK_DEPTH + 2)
        return pool

    async def put(self, pos: int, data: memoryview, buf: mmap.mmap, pool: _Buffers) -> None:
        """Queue ``data`` (a view of ``buf``) for offset ``pos``; ``buf`` goes back to ``pool`` once
        it is written and hashed."""
        await self._send.send(_Batch(pos, data, buf, pool))

    def close(self) -> None:
        """No more batches: :meth:`run` returns once the queued ones are written."""
        self._send.close()

    async def run(self, nursery: trio.Nursery) -> None:
        """Write batches until :meth:`close`; every ``SYNC_EVERY`` bytes written through the page
        cache start an fdatasync in the background, so the commit's fsync is left with only the
        last few batches (``O_DIRECT`` writes leave nothing to write back)."""
        async with self._receive:
            async for batch in self._receive:
                hashing = await trio.to_thread.run_sync(self._writer.writev_at, batch.pos, [batch.data])
                if hashing is None:
                    batch.pool.give_back(batch.buf)
                else:
                    hashing.add_done_callback(self._give_back_later(batch))
                self.written += len(batch.data)
                buffered = self._writer.buffered_bytes
                if buffered - self._synced_upto >= SYNC_EVERY and not self._syncing:
                    self._synced_upto, self._syncing = buffered, True
                    nursery.start_soon(self._sync)

    def _give_back_later(self, batch: _Batch) -> Callable[[Future[None]], None]:
        """A done-callback for the hash over ``batch`` (it runs in the hash thread): the buffer
        goes back in the Trio thread. A hash that failed keeps its buffer (the pull fails anyway)."""
        def done(hashing: Future[None]) -> None:
            if hashing.cancelled() or hashing.exception() is not None:
                return
            try:
                self._token.run_sync_soon(batch.pool.give_back, batch.buf)
            except trio.RunFinishedError:
                pass  # the pull is over; nothing will take a buffer again

        return done

    async def _sync(self) -> None:
        try:
            await trio.to_thread.run_sync(os.fdatasync, self._sync_fd)
        except OSError:
            pass  # only an early start: the commit's fsync still decides
        finally:
            self._syncing = False


class _Batch:
    """Bytes for offset ``pos`` (``data``, a view of ``buf``) on their way to the writer."""

    __slots__ = ("buf", "data", "pool", "pos")

    def __init__(self, pos: int, data: memoryview, buf: mmap.mmap, pool: _Buffers) -> None:
        self.pos = pos
        self.data = data
        self.buf = buf
        self.pool = pool


class _Cursor:
    """How far one response has been handed to the sink; a retry continues from ``pos``."""

    def __init__(self, pos: int) -> None:
        self.pos = pos


async def _receive_into(sink: _Sink, resp: Response, cursor: _Cursor, end: int, label: str, batch: int) -> None:
    """Receive ``resp``'s body straight into batch buffers of ``batch`` bytes and hand each to
    ``sink`` when full, for offsets [cursor.pos, end). Bytes not yet handed over when the body
    fails are dropped (a retry continues from ``cursor.pos``)."""
    pool = sink.buffers(batch)
    while True:
        if cursor.pos >= end:  # all asked for is in: the body must end here
            if await resp.readinto(bytearray(1)):
                await resp.aclose()
                raise IntegrityError(f"{label}: registry sent more bytes than expected")
            return
        buf = await pool.take()
        view = memoryview(buf)
        filled = 0
        try:
            while filled < len(buf):
                # one byte of room past ``end`` catches a body longer than asked for
                got = await resp.readinto(view[filled:min(len(buf), end - cursor.pos + 1)])
                if not got:
                    break
                filled += got
                if cursor.pos + filled > end:
                    await resp.aclose()
                    raise IntegrityError(f"{label}: registry sent more bytes than expected")
            if filled:
                await sink.put(cursor.pos, view[:filled], buf, pool)
        except BaseException:
            pool.give_back(buf)
            raise
        if not filled:
            pool.give_back(buf)
            return
        cursor.pos += filled
        if filled < len(buf):
            return  # the body ended


class BlobFetcher:
    """Fetch blobs of one store, retrying transient failures of the body as a whole."""

    def __init__(self, store: Store, client: RegistryClient) -> None:
        self.store = store
        self.client = client
        self.options = client.options
        self.publisher = client.session.publisher(store)  # small blobs: durable in batches
        self.resumed_bytes = 0

    async def fetch(self, repo: str, desc: Descriptor) -> int:
        """Download and commit ``desc``; returns the bytes received."""
        attempt = 0
        while True:
            try:
                if desc.size <= IN_MEMORY_LIMIT:
                    return await self._small(repo, desc)
                if desc.size <= self.options.range_threshold:
                    return await self._streamed(repo, desc)
                return await self._ranged(repo, desc)
            except (TransportError, DigestMismatch, IntegrityError, _ChunkError) as err:
                retriable = not isinstance(err, TransportError) or err.retriable
                if not retriable or attempt >= self.options.retries:
                    raise
                await trio.sleep(min(self.options.backoff_max, self.options.backoff_base * 2**attempt))
                attempt += 1

    async def _small(self, repo: str, desc: Descriptor) -> int:
        async with await _blob_request(self.client, repo, desc) as resp:
            try:
                data = await resp.read(desc.size)
            except BodyTooLarge:
                raise IntegrityError(f"blob {desc.digest}: registry sent more than {desc.size} bytes") from None
        if len(data) != desc.size:
            raise IntegrityError(f"blob {desc.digest}: got {len(data)} bytes, expected {desc.size}")
        await self.publisher.put(data, desc.digest)
        return len(data)

    async def _streamed(self, repo: str, desc: Descriptor) -> int:
        writer = await trio.to_thread.run_sync(self.store.blobs.writer, desc.digest, desc.size)
        try:
            async with await _blob_request(self.client, repo, desc) as resp:
                end = await _sequential_into(
                    lambda _offset, data: writer.write(data), resp, 0, desc.size, f"blob {desc.digest}"
                )
            await trio.to_thread.run_sync(writer.seal, False)
            await self.publisher.publish(writer)
            return end
        finally:
            with trio.CancelScope(shield=True):  # a cancelled download must not leave its file behind
                await trio.to_thread.run_sync(writer.abort)

    async def _ranged(self, repo: str, desc: Descriptor) -> int:
        size, step = desc.size, max(1, self.options.chunk_size)
        chunks = [(off, min(size, off + step)) for off in range(0, size, step)]
        writer = await trio.to_thread.run_sync(self.store.blobs.writer, desc.digest, size, True)
        lock_fd = await trio.to_thread.run_sync(resume.lock_writer, writer)
        partial: resume.Partial | None = None
        keep = False
        try:
            await trio.to_thread.run_sync(resume.mark_ranged, writer)
            partial = await trio.to_thread.run_sync(resume.find_partial, self.store, desc)
            if partial is not None:
                chunks = await trio.to_thread.run_sync(resume.adopt, partial, writer, chunks)
                self.resumed_bytes += partial.bytes
            sink = _Sink(writer, lock_fd, max(1, self.options.chunk_parallelism))
            received = await self._download(repo, desc, sink, chunks) if chunks else 0
            await trio.to_thread.run_sync(writer.commit)
            return received
        except (IntegrityError, _ChunkError):
            raise  # wrong bytes, or Range answers we cannot trust: nothing worth keeping
        except BaseException:
            keep = True  # a connection error, a --timeout, Ctrl-C: the next attempt resumes from here
            raise
        finally:
            with trio.CancelScope(shield=True):  # also when cancelled: close the files, drop the lock
                await trio.to_thread.run_sync(self._cleanup, writer, lock_fd, partial, keep)

    @staticmethod
    def _cleanup(writer: IngestWriter, lock_fd: int, partial: resume.Partial | None, keep: bool) -> None:
        """Drop the download's files and lock; with ``keep``, its partial file stays (marked) for a resume."""
        if partial is not None:
            resume.release(partial, adopted=True)
        if keep and not writer.sealed and os.path.getsize(writer.temp_path) > 0:
            writer.detach()
        else:
            resume.unmark_ranged(writer)
            writer.abort()
        os.close(lock_fd)

    async def _download(self, repo: str, desc: Descriptor, sink: _Sink, chunks: list[tuple[int, int]]) -> int:
        """Fetch ``chunks`` into ``sink``; returns the bytes received once all are written."""
        async with task_group() as nursery:
            nursery.start_soon(sink.run, nursery)
            try:
                await self._feed(repo, desc, sink, chunks)
            finally:
                sink.close()
        return sink.written

    async def _feed(self, repo: str, desc: Descriptor, sink: _Sink, chunks: list[tuple[int, int]]) -> None:
        """The first request decides: a plain 200 is taken whole. On a big blob the first
        ``chunk_size`` bytes are a probe: if they arrived at ``STREAM_RATE`` or more, one stream is
        not the limit and the rest comes as one request per run of missing bytes (parallel streams
        would only add requests and CPU); else the remaining chunks go in parallel."""
        start = chunks[0][0]
        probe_end = min(coalesce(chunks)[0][1], start + max(1, self.options.chunk_size))
        probe = (desc.size >= PROBE_MIN_SIZE and probe_end - start >= PROBE_MIN_CHUNK
                 and probe_end < chunks[-1][1])
        end = probe_end if probe else chunks[0][1]
        began = trio.current_time()
        first = await _blob_request(self.client, repo, desc, start, end - 1)
        async with first:
            if first.status == 200:  # Range ignored: take the whole body as it comes
                await _receive_into(sink, first, _Cursor(0), desc.size, f"blob {desc.digest}", STREAM_BATCH)
                return
            if not probe:
                await self._parallel(repo, desc, sink, chunks, first)
                return
            await self._fetch_range(repo, desc, sink, start, end, first, STREAM_BATCH)
        rest = clip(chunks, end)
        if (end - start) / max(trio.current_time() - began, 1e-9) >= STREAM_RATE:
            for run_start, run_end in coalesce(rest):
                await self._fetch_range(repo, desc, sink, run_start, run_end, None, STREAM_BATCH)
        else:
            await self._parallel(repo, desc, sink, rest, None)

    async def _parallel(self, repo: str, desc: Descriptor, sink: _Sink, ranges: list[tuple[int, int]],
                        first: Response | None) -> None:
        """Fetch ``ranges`` with at most ``chunk_parallelism`` requests at once; ``first``, when
        given, already answers ``ranges[0]``."""
        limiter = trio.Semaphore(max(1, self.options.chunk_parallelism))

        async def limited(start: int, end: int) -> None:
            async with limiter:
                await self._fetch_range(repo, desc, sink, start, end, None, CHUNK_BATCH)

        async with task_group() as nursery:
            if first is not None:
                # The first answer already holds a connection: it is read at once, outside the limit,
                # so it can never wait for a slot that its own blob's other chunks are waiting on.
                nursery.start_soon(self._fetch_range, repo, desc, sink, *ranges[0], first, CHUNK_BATCH)
                ranges = ranges[1:]
            for start, end in ranges:
                nursery.start_soon(limited, start, end)

    async def _fetch_range(self, repo: str, desc: Descriptor, sink: _Sink, start: int, end: int,
                           resp: Response | None, batch: int) -> None:
        """Bytes [start, end) into ``sink``; a transient failure continues from what was handed over."""
        label = f"blob {desc.digest}"
        cursor = _Cursor(start)
        tries = 0
        while cursor.pos < end:
            try:
                if resp is None:
                    resp = await _blob_request(self.client, repo, desc, cursor.pos, end - 1)
                async with resp:
                    self._check_range(resp, cursor.pos, end, desc.size)
                    await _receive_into(sink, resp, cursor, end, label, batch)
                resp = None
                if cursor.pos < end:
                    raise TransportError(f"{label}: chunk ended early at byte {cursor.pos}")
            except TransportError as err:
                resp = None
                if not err.retriable or tries >= self.options.retries:
                    raise
                tries += 1
                await trio.sleep(min(self.options.backoff_max, self.options.backoff_base * 2**tries))

    @staticmethod
    def _check_range(resp: Response, start: int, end: int, size: int) -> None:
        """A 206 must cover exactly the bytes asked for; a 200 in the middle means Range broke."""
        if resp.status != 206:
            raise _ChunkError(f"{resp.url}: registry stopped honouring Range requests")
        match = _CONTENT_RANGE_RE.fullmatch((resp.header("content-range") or "").strip())
        if match is None:
            raise _ChunkError(f"{resp.url}: 206 without a usable Content-Range")
        got_start, got_end, total = int(match.group(1)), int(match.group(2)), match.group(3)
        if got_start != start or got_end != end - 1 or (total != "*" and int(total) != size):
            raise _ChunkError(
                f"{resp.url}: asked for bytes {start}-{end - 1}/{size}, got {got_start}-{got_end}/{total}"
            )
