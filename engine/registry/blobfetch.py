"""Downloading one blob into the store, verified at commit.

Small blobs are read into memory (growing only with received bytes, capped at the declared size)
and verified in one thread call. Larger ones stream into an ingest file. Both are handed to the
store's ingest, which makes them durable in batches with the other small blobs
(:mod:`..ingest.batched`). Above the range threshold, the blob is split into even Range chunks
fetched ``chunk_parallelism`` at a time, each worker taking the next chunk in order; if the
registry answers the first Range with a plain 200, the whole body is streamed instead. Bodies are
received straight into page-aligned batch buffers (:class:`_Buffers`, reused); each batch is
written to the sparse ingest file as it fills, with ``O_DIRECT`` (no copy into the page cache, no
writeback later), and hashed in offset order from the same buffer as soon as the batches before it
are in, so nothing is read back. A buffer goes back once its write and its hash are done. The
ranged blob's file, and what a killed download left of it, are the ingest's
(:mod:`..ingest.ranged`). Nothing becomes visible before the digest of the whole file matches.
"""

from __future__ import annotations

import mmap
import os
import queue
import re
import threading
from collections.abc import Callable

import trio

from ..blobstore import IngestWriter
from ..descriptor import Descriptor
from ..errors import IntegrityError
from ..store import Store
from .client import RegistryClient
from .errors import BadRangeAnswer, TransportError
from .http import ClientResponse
from .inflight import request_label
from .tasks import task_group

# Blobs up to this size are received into memory and published in batches (one thread call per
# batch); gadget layers are rarely larger. At most max_concurrent_blobs of them are in flight.
IN_MEMORY_LIMIT = 2 * 1024 * 1024
WRITE_BUFFER = 1024 * 1024
# A ranged blob's bodies arrive in batches of CHUNK_BATCH bytes (STREAM_BATCH for a whole body sent
# as one plain 200). Each chunk worker receives into buffers of its own, a chunk's worth plus one
# (the next chunk starts while the last batch is still written or hashed): 4 workers × 5 × 2 MiB
# with 8 MiB chunks, inside the budget of 64 MiB + chunk size × parallelism with 30-40 MiB for the
# interpreter and its modules. Buffers of their own also mean the worker of the chunk the hash
# waits for can never be starved by batches that landed ahead of it.
STREAM_BATCH = 8 * 1024 * 1024
STREAM_BUFFERS = 4
CHUNK_BATCH = 2 * 1024 * 1024
SYNC_EVERY = 32 * 1024 * 1024  # buffered ranged writes: start writeback after this many new bytes
_CONTENT_RANGE_RE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)")
WriteAt = Callable[[int, bytes], None]


async def _blob_request(client: RegistryClient, repo: str, desc: Descriptor, first: int | None = None,
                        last: int | None = None) -> ClientResponse:
    headers: list[tuple[str, str]] = []
    ok: tuple[int, ...] = (200,)
    if first is not None:
        headers.append(("Range", f"bytes={first}-{last}"))
        ok = (200, 206)
    return await client.request(
        "GET", f"/v2/{repo}/blobs/{desc.digest}", scopes=(f"repository:{repo}:pull",), headers=headers, ok=ok,
        what=f"blob {desc.digest} of {client.domain}/{repo}",
    )


def _retrying(client: RegistryClient, repo: str, desc: Descriptor) -> str:
    """What a wait before fetching ``desc`` again is listed as."""
    return f"{request_label('GET', client.url(f'/v2/{repo}/blobs/{desc.digest}'))} (retrying)"


def _write_pieces(write_at: WriteAt, pos: int, pieces: list[bytes]) -> None:
    """One thread hop for a buffer's worth of pieces, written one by one (no joined copy)."""
    for piece in pieces:
        write_at(pos, piece)
        pos += len(piece)


async def _sequential_into(write_at: WriteAt, resp: ClientResponse, start: int, end: int, label: str) -> int:
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


class _Buffers:
    """At most ``count`` reusable buffers of ``size`` bytes, allocated when first needed.

    Reuse is the point: a fresh buffer per read costs a page fault per 4 KiB, a large part of
    the cost of receiving the bytes. Buffers are anonymous mappings, so they start on a page and
    the ingest writer can send them to disk with ``O_DIRECT``. When all are in use, :meth:`take`
    first asks ``spill`` to free one whose bytes are on disk already (its hash will read them back),
    else waits; that bounds what is in flight. Called from the Trio thread only."""

    def __init__(self, size: int, count: int) -> None:
        self.size = size
        self._free: list[mmap.mmap] = []
        self._left = count
        self._changed = trio.Event()

    async def take(self, spill: Callable[[_Buffers], bool]) -> mmap.mmap:
        while not self._left:
            if not spill(self):
                self._changed = trio.Event()
                await self._changed.wait()
        self._left -= 1
        return self._free.pop() if self._free else mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE)

    def give_back(self, buf: mmap.mmap) -> None:
        self._free.append(buf)
        self._left += 1
        self._changed.set()

    def changed(self) -> None:
        """One of this pool's batches was written: it may be spilled now."""
        self._changed.set()


class _Batch:
    """Bytes for offset ``pos`` (``data``, a view of ``buf``) on their way to the write and the hash;
    ``buf`` goes back to ``pool`` once both are done."""

    __slots__ = ("buf", "data", "pending", "pool", "pos", "written")

    def __init__(self, pos: int, data: memoryview, buf: mmap.mmap, pool: _Buffers) -> None:
        self.pos = pos
        self.data = data
        self.buf = buf
        self.pool = pool
        self.pending = 2  # the write and the hash
        self.written = False

    def done_one(self) -> None:
        self.pending -= 1
        if not self.pending:
            self.pool.give_back(self.buf)
        else:
            self.pool.changed()


class _Sink:
    """Every write and the running hash of one ranged blob.

    Two threads of its own run for the whole download. One writes batches in the order they arrive
    (concurrent ``pwrite`` calls to one file only spin on its inode lock); the other hashes them in
    offset order, each as soon as the batches before it are in, so a batch that lands ahead of the
    hash waits in its buffer. Each thread takes its next batch the moment it is done with the last,
    without a hop through the Trio loop in between, and tells the Trio thread when a batch is done,
    which returns its buffer. Only when a receiver runs out of buffers behind a slow chunk is one of
    its written batches spilled: its buffer is reused and its bytes are read back from the file for
    the hash, so the other chunks keep coming. Receiving, writing and hashing overlap (the two
    threads release the GIL).
    """

    def __init__(self, writer: IngestWriter, sync_fd: int, hashed: int) -> None:
        self._writer = writer
        self._sync_fd = sync_fd
        self._writes: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()  # None: no more
        # The hash thread's inputs, shared with the Trio thread under this lock:
        self._state = threading.Condition()
        self._unhashed: dict[int, _Batch] = {}  # received, waiting for the hash to reach them
        self._spilled: dict[int, int] = {}  # start -> end of batches to hash from the file
        self._hashing_to: int | None = None  # the end of the batch being hashed now
        self._next_hash: int | None = hashed  # where the hashed prefix ends (after a resume's adoption); None: given up
        self._closed = False
        # The two threads hold their slots for the whole download: a limiter of their own, so that
        # many big blobs at once never take every thread the rest of the pull needs.
        self._thread_slots = trio.CapacityLimiter(2)
        self._token = trio.lowlevel.current_trio_token()  # how the threads reach the Trio thread
        self._nursery: trio.Nursery | None = None
        self._synced_upto = 0  # the writer's buffered_bytes when the last background sync started
        self._syncing = False
        self.written = 0

    @trio.lowlevel.enable_ki_protection
    def put(self, pos: int, data: memoryview, buf: mmap.mmap, pool: _Buffers) -> None:
        """Queue ``data`` (a view of ``buf``) for offset ``pos``; ``buf`` goes back to ``pool`` once
        it is written and hashed. Never waits: what is in flight is bounded by the pools' buffers.
        Ctrl-C waits until both threads have the batch, so neither waits for one the other lacks."""
        batch = _Batch(pos, data, buf, pool)
        with self._state:
            if self._next_hash is None:
                batch.pending = 1  # the commit hashes the file
            else:
                self._unhashed[pos] = batch
                if pos == self._next_hash:
                    self._state.notify()
        self._writes.put(batch)

    @trio.lowlevel.enable_ki_protection
    def close(self) -> None:
        """No more batches: :meth:`run` returns once the queued ones are written and hashed. Ctrl-C
        cannot land between telling the two threads: one left waiting would hold the pull forever
        (a thread call cannot be cancelled)."""
        with self._state:
            self._closed = True
            self._state.notify()
        self._writes.put(None)

    async def run(self, nursery: trio.Nursery) -> None:
        """Write and hash batches until :meth:`close`. Every ``SYNC_EVERY`` bytes written through
        the page cache start an fdatasync in the background, so the commit's fsync is left with only
        the last few batches (``O_DIRECT`` writes leave nothing to write back)."""
        self._nursery = nursery
        async with task_group() as tasks:
            tasks.start_soon(self._run_in_thread, self._write_all)
            tasks.start_soon(self._run_in_thread, self._hash_in_order)

    async def _run_in_thread(self, thread_main: Callable[[], None]) -> None:
        """Run one of the two threads' loops; when it fails (or never starts), the other is told to
        stop, else it would wait for batches that will not come."""
        try:
            await trio.to_thread.run_sync(thread_main, limiter=self._thread_slots)
        except BaseException:
            self.close()
            raise

    def _write_all(self) -> None:
        """The write thread: each batch as it was queued, until :meth:`close`."""
        while (batch := self._writes.get()) is not None:
            self._writer.write_unhashed(batch.pos, batch.data)
            self._token.run_sync_soon(self._written, batch)

    def _written(self, batch: _Batch) -> None:
        """Called in the Trio thread once ``batch`` is in the file: its buffer and the background
        sync belong to the Trio thread, so the write thread hands them over here."""
        batch.written = True
        batch.done_one()
        self.written += len(batch.data)
        buffered = self._writer.buffered_bytes
        if buffered - self._synced_upto >= SYNC_EVERY and not self._syncing:
            assert self._nursery is not None
            self._synced_upto, self._syncing = buffered, True
            self._nursery.start_soon(self._sync)

    def _next_to_hash(self) -> tuple[int, _Batch | None, int] | None:
        """The hash thread's next job, waiting for it: (start, the batch or None, end to read back
        from the file); None once the hash was given up, or nothing more will come."""
        with self._state:
            while self._next_hash is not None:
                start = self._next_hash
                batch = self._unhashed.pop(start, None)
                if batch is not None:
                    self._hashing_to = batch.pos + len(batch.data)
                    return start, batch, self._hashing_to
                spilled_end = self._spilled.pop(start, None)
                if spilled_end is not None:
                    self._hashing_to = spilled_end
                    return start, None, spilled_end
                if self._closed:
                    return None
                self._state.wait()
            return None

    def _hash_in_order(self) -> None:
        """The hash thread: each batch once the prefix reaches it; what is left at the end (after a
        failure) is hashed from the file by the commit."""
        while (job := self._next_to_hash()) is not None:
            start, batch, end = job
            if batch is not None:
                reached = self._writer.hash_next(batch.pos, batch.data)
                self._token.run_sync_soon(batch.done_one)
            else:
                reached = self._writer.hash_from_file(start, end)
            with self._state:
                self._hashing_to = None
                if reached > start:
                    self._next_hash = reached
                    continue
                self._next_hash = None  # the writer gave its running hash up: no batch is waited for
                for waiting in self._unhashed.values():
                    self._token.run_sync_soon(waiting.done_one)
                self._unhashed.clear()
                self._spilled.clear()

    def spill(self, pool: _Buffers) -> bool:
        """Free the buffer of the written batch of ``pool`` that the hash will reach last, of those
        behind a gap (bytes not received yet); False when there is none (the caller waits for a
        write or a hash: batches without a gap before them are hashed without waiting for the network)."""
        with self._state:
            if self._next_hash is None:
                return False
            gap = self._hashing_to or self._next_hash  # where the first bytes not received yet start
            while True:
                batch = self._unhashed.get(gap)
                end = batch.pos + len(batch.data) if batch is not None else self._spilled.get(gap)
                if end is None:
                    break
                gap = end
            candidates = [b for b in self._unhashed.values() if b.pool is pool and b.written and b.pos >= gap]
            if not candidates:
                return False
            batch = max(candidates, key=lambda b: b.pos)
            del self._unhashed[batch.pos]
            self._spilled[batch.pos] = batch.pos + len(batch.data)
        batch.done_one()
        return True

    async def restart_hash(self) -> None:
        """The whole body comes again from offset 0 (a plain 200): hash it all from there."""
        await trio.to_thread.run_sync(self._writer.restart_hash)
        with self._state:
            self._next_hash = 0
            self._state.notify()

    async def _sync(self) -> None:
        try:
            await trio.to_thread.run_sync(os.fdatasync, self._sync_fd)
        except OSError:
            pass  # only an early start: the commit's fsync still decides
        finally:
            self._syncing = False


class _Cursor:
    """How far one response has been handed to the sink; a retry continues from ``pos``."""

    def __init__(self, pos: int) -> None:
        self.pos = pos


async def _receive_into(sink: _Sink, resp: ClientResponse, cursor: _Cursor, end: int, label: str,
                        pool: _Buffers) -> None:
    """Receive ``resp``'s body straight into buffers of ``pool`` and hand each to ``sink`` when
    full, for offsets [cursor.pos, end). Bytes not yet handed over when the body fails are dropped
    (a retry continues from ``cursor.pos``)."""
    while True:
        if cursor.pos >= end:  # all asked for is in: the body must end here
            if await resp.readinto(bytearray(1)):
                await resp.aclose()
                raise IntegrityError(f"{label}: registry sent more bytes than expected")
            return
        buf = await pool.take(sink.spill)
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
            if not filled:
                pool.give_back(buf)
                return
            sink.put(cursor.pos, view[:filled], buf, pool)
        except BaseException:
            pool.give_back(buf)  # not handed over (put hands over only when it returns)
            raise
        cursor.pos += filled
        if filled < len(buf):
            return  # the body ended


class BlobFetcher:
    """Fetch blobs of one store, retrying transient failures of the body as a whole."""

    def __init__(self, store: Store, client: RegistryClient) -> None:
        self.store = store
        self.client = client
        self.options = client.options
        self.ingest = store.ingest  # small blobs: durable in batches

    async def fetch(self, repo: str, desc: Descriptor) -> int:
        """Download and commit ``desc``; returns the bytes received."""
        attempts = self.client.retry.attempts()
        while True:
            try:
                if desc.size <= IN_MEMORY_LIMIT:
                    return await self._small(repo, desc)
                if desc.size <= self.options.range_threshold:
                    return await self._streamed(repo, desc)
                return await self._ranged(repo, desc)
            except (TransportError, IntegrityError, BadRangeAnswer) as err:
                wait = attempts.after_error(err, refetch=True)
                if wait is None:
                    raise
            await self.client.pause(wait, _retrying(self.client, repo, desc))

    async def _small(self, repo: str, desc: Descriptor) -> int:
        """Received straight into a buffer of the declared size (one byte more catches a longer
        body), then written, verified and published with the batch's other small blobs."""
        buf = bytearray(desc.size + 1)
        view = memoryview(buf)
        filled = 0
        async with await _blob_request(self.client, repo, desc) as resp:
            while got := await resp.readinto(view[filled:]):
                filled += got
                if filled > desc.size:
                    raise IntegrityError(f"blob {desc.digest}: registry sent more than {desc.size} bytes")
        if filled != desc.size:
            raise IntegrityError(f"blob {desc.digest}: got {filled} bytes, expected {desc.size}")
        view.release()
        del buf[filled:]
        await self.ingest.put_batched(buf, desc.digest)
        return filled

    async def _streamed(self, repo: str, desc: Descriptor) -> int:
        writer = await trio.to_thread.run_sync(self.ingest.writer, desc.digest, desc.size)
        try:
            async with await _blob_request(self.client, repo, desc) as resp:
                end = await _sequential_into(
                    lambda _offset, data: writer.write(data), resp, 0, desc.size, f"blob {desc.digest}"
                )
            await trio.to_thread.run_sync(writer.seal, False)
            await self.ingest.publish(writer)
            return end
        finally:
            with trio.CancelScope(shield=True):  # a cancelled download must not leave its file behind
                await trio.to_thread.run_sync(writer.abort)

    async def _ranged(self, repo: str, desc: Descriptor) -> int:
        size, step = desc.size, max(1, self.options.chunk_size)
        chunks = [(off, min(size, off + step)) for off in range(0, size, step)]
        ranged = await trio.to_thread.run_sync(self.ingest.ranged, desc)
        keep = False
        try:
            chunks = await trio.to_thread.run_sync(ranged.adopt_partial, chunks)
            hashed = await trio.to_thread.run_sync(lambda: ranged.writer.hashed)  # what adoption hashed already
            sink = _Sink(ranged.writer, ranged.lock_fd, hashed)
            received = await self._download(repo, desc, sink, chunks) if chunks else 0
            await trio.to_thread.run_sync(ranged.commit)
            return received
        except (IntegrityError, BadRangeAnswer):
            raise  # wrong bytes, or Range answers we cannot trust: nothing worth keeping
        except BaseException:
            keep = True  # a connection error, a --timeout, Ctrl-C: the next attempt resumes from here
            raise
        finally:
            with trio.CancelScope(shield=True):  # also when cancelled: close the files, drop the lock
                await trio.to_thread.run_sync(ranged.close, keep)

    async def _download(self, repo: str, desc: Descriptor, sink: _Sink, chunks: list[tuple[int, int]]) -> int:
        """Fetch ``chunks`` into ``sink``; returns the bytes received once all are written and hashed."""
        async with task_group() as nursery:
            nursery.start_soon(sink.run, nursery)
            try:
                await self._feed(repo, desc, sink, chunks)
            finally:
                sink.close()
        return sink.written

    async def _feed(self, repo: str, desc: Descriptor, sink: _Sink, chunks: list[tuple[int, int]]) -> None:
        """The first chunk's answer decides: a plain 200 (Range ignored) is taken whole, as one
        stream; a 206 is read by the first worker while the others take the next chunks."""
        first = await _blob_request(self.client, repo, desc, chunks[0][0], chunks[0][1] - 1)
        async with first:  # closed here if no worker got to read it
            if first.status != 200:
                await self._parallel(repo, desc, sink, chunks, first)
                return
            await sink.restart_hash()  # the body starts at 0, whatever a resumed partial held
            pool = _Buffers(STREAM_BATCH, STREAM_BUFFERS)
            await _receive_into(sink, first, _Cursor(0), desc.size, f"blob {desc.digest}", pool)

    async def _parallel(self, repo: str, desc: Descriptor, sink: _Sink, chunks: list[tuple[int, int]],
                        first: ClientResponse) -> None:
        """``chunk_parallelism`` workers, each taking the next chunk in order with buffers of its
        own; ``first`` already answers ``chunks[0]`` (read at once, outside any wait)."""
        batch = max(1, min(CHUNK_BATCH, self.options.chunk_size))
        per_worker = -(-max(1, self.options.chunk_size) // batch) + 1
        todo = iter(chunks[1:])

        async def worker(resp: ClientResponse | None) -> None:
            pool = _Buffers(batch, per_worker)
            if resp is not None:
                await self._fetch_range(repo, desc, sink, *chunks[0], resp, pool)
            for start, end in todo:  # shared: chunks are taken in order, whichever worker is free
                await self._fetch_range(repo, desc, sink, start, end, None, pool)

        async with task_group() as nursery:
            nursery.start_soon(worker, first)
            for _ in range(min(max(1, self.options.chunk_parallelism), len(chunks)) - 1):
                nursery.start_soon(worker, None)

    async def _fetch_range(self, repo: str, desc: Descriptor, sink: _Sink, start: int, end: int,
                           resp: ClientResponse | None, pool: _Buffers) -> None:
        """Bytes [start, end) into ``sink``; a transient failure continues from what was handed over."""
        label = f"blob {desc.digest}"
        cursor = _Cursor(start)
        attempts = self.client.retry.attempts()
        while cursor.pos < end:
            try:
                if resp is None:
                    resp = await _blob_request(self.client, repo, desc, cursor.pos, end - 1)
                async with resp:
                    self._check_range(resp, cursor.pos, end, desc.size)
                    await _receive_into(sink, resp, cursor, end, label, pool)
                resp = None
                if cursor.pos < end:
                    raise TransportError(f"{label}: chunk ended early at byte {cursor.pos}")
            except TransportError as err:
                resp = None
                wait = attempts.after_error(err)
                if wait is None:
                    raise
                await self.client.pause(wait, _retrying(self.client, repo, desc))

    @staticmethod
    def _check_range(resp: ClientResponse, start: int, end: int, size: int) -> None:
        """A 206 must cover exactly the bytes asked for; a 200 in the middle means Range broke."""
        if resp.status != 206:
            raise BadRangeAnswer(f"{resp.url}: registry stopped honouring Range requests")
        match = _CONTENT_RANGE_RE.fullmatch((resp.header("content-range") or "").strip())
        if match is None:
            raise BadRangeAnswer(f"{resp.url}: 206 without a usable Content-Range")
        got_start, got_end, total = int(match.group(1)), int(match.group(2)), match.group(3)
        if got_start != start or got_end != end - 1 or (total != "*" and int(total) != size):
            raise BadRangeAnswer(
                f"{resp.url}: asked for bytes {start}-{end - 1}/{size}, got {got_start}-{got_end}/{total}"
            )
