"""Downloading one blob into the store, verified at commit.

Small blobs are read into memory (growing only with received bytes, capped at the declared size)
and committed in one thread call. Larger ones stream into an ingest file. Above the range
threshold, the blob is split into Range chunks fetched in parallel and written with ``write_at``
at their offsets; if the registry answers the first Range with a plain 200, the whole body is
streamed instead. Either way the store re-hashes the finished file before it becomes visible.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

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
SYNC_EVERY = 64 * 1024 * 1024  # ranged blobs: start writeback after this many new bytes
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
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


class BlobFetcher:
    """Fetch blobs of one store, retrying transient failures of the body as a whole."""

    def __init__(self, store: Store, client: RegistryClient) -> None:
        self.store = store
        self.client = client
        self.options = client.options
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
        await trio.to_thread.run_sync(self._commit_bytes, desc, data)
        return len(data)

    def _commit_bytes(self, desc: Descriptor, data: bytes) -> None:
        """Hash once, while writing; the commit compares against the expected digest."""
        with self.store.blobs.writer(desc.digest, desc.size) as writer:
            writer.write(data)
            writer.commit()

    async def _streamed(self, repo: str, desc: Descriptor) -> int:
        writer = await trio.to_thread.run_sync(self.store.blobs.writer, desc.digest, desc.size)
        try:
            async with await _blob_request(self.client, repo, desc) as resp:
                end = await _sequential_into(
                    lambda _offset, data: writer.write(data), resp, 0, desc.size, f"blob {desc.digest}"
                )
            await trio.to_thread.run_sync(writer.commit)
            return end
        finally:
            await trio.to_thread.run_sync(writer.abort)

    async def _ranged(self, repo: str, desc: Descriptor) -> int:
        size, step = desc.size, max(1, self.options.chunk_size)
        label = f"blob {desc.digest}"
        chunks = [(off, min(size, off + step)) for off in range(0, size, step)]
        writer = await trio.to_thread.run_sync(self.store.blobs.writer, desc.digest, size)
        lock_fd = await trio.to_thread.run_sync(resume.lock_writer, writer)
        partial: resume.Partial | None = None
        try:
            await trio.to_thread.run_sync(resume.mark_ranged, writer)
            partial = await trio.to_thread.run_sync(resume.find_partial, self.store, desc)
            if partial is not None:
                chunks = await trio.to_thread.run_sync(resume.adopt, partial, writer, chunks)
                self.resumed_bytes += partial.bytes
            received = 0
            if chunks:
                start, end = chunks[0]
                first = await _blob_request(self.client, repo, desc, start, end - 1)
                async with first:
                    if first.status == 200:  # Range ignored: take the whole body as it comes
                        received = await _sequential_into(writer.write_at, first, 0, size, label)
                    else:
                        received = await self._chunks(repo, desc, writer.write_at, first, chunks, lock_fd)
            await trio.to_thread.run_sync(writer.commit)
            return received
        finally:
            await trio.to_thread.run_sync(self._cleanup, writer, lock_fd, partial)

    @staticmethod
    def _cleanup(writer: IngestWriter, lock_fd: int, partial: resume.Partial | None) -> None:
        if partial is not None:
            resume.release(partial, adopted=True)
        resume.unmark_ranged(writer)
        writer.abort()
        os.close(lock_fd)

    async def _chunks(self, repo: str, desc: Descriptor, write_at: WriteAt, first: Response,
                      ranges: list[tuple[int, int]], sync_fd: int) -> int:
        """Fetch ``ranges`` in parallel; ``sync_fd`` (the ingest file) is fdatasync'd in the background
        every ``SYNC_EVERY`` bytes, so the commit's fsync is left with only the last few chunks."""
        size = desc.size
        limiter = trio.Semaphore(max(1, self.options.chunk_parallelism))
        total = 0
        unsynced = 0
        syncing = False

        async def sync() -> None:
            nonlocal syncing
            try:
                await trio.to_thread.run_sync(os.fdatasync, sync_fd)
            except OSError:
                pass  # only an early start: the commit's fsync still decides
            finally:
                syncing = False

        def maybe_sync(nursery: trio.Nursery, written: int) -> None:
            nonlocal unsynced, syncing
            unsynced += written
            if unsynced >= SYNC_EVERY and not syncing:
                unsynced, syncing = 0, True
                nursery.start_soon(sync)

        async def one(start: int, end: int, resp: Response | None) -> None:
            nonlocal total
            pos = start
            tries = 0
            while pos < end:
                try:
                    if resp is None:
                        resp = await _blob_request(self.client, repo, desc, pos, end - 1)
                    async with resp:
                        self._check_range(resp, pos, end, size)
                        new_pos = await _sequential_into(write_at, resp, pos, end, f"blob {desc.digest}")
                    total += new_pos - pos
                    maybe_sync(nursery, new_pos - pos)
                    pos = new_pos
                    resp = None
                    if pos < end:
                        raise TransportError(f"blob {desc.digest}: chunk ended early at byte {pos}")
                except TransportError as err:
                    resp = None
                    if not err.retriable or tries >= self.options.retries:
                        raise
                    tries += 1
                    await trio.sleep(min(self.options.backoff_max, self.options.backoff_base * 2**tries))

        async def limited(start: int, end: int) -> None:
            async with limiter:
                await one(start, end, None)

        async with task_group() as nursery:
            # The first answer already holds a connection: it is read at once, outside the limit,
            # so it can never wait for a slot that its own blob's other chunks are waiting on.
            nursery.start_soon(one, ranges[0][0], ranges[0][1], first)
            for start, end in ranges[1:]:
                nursery.start_soon(limited, start, end)
        return total

    @staticmethod
    def _check_range(resp: Response, start: int, end: int, size: int) -> None:
        """A 206 must cover exactly the bytes asked for; a 200 in the middle means Range broke."""
        if resp.status != 206:
            raise _ChunkError(f"{resp.url}: registry stopped honouring Range requests")
        match = _CONTENT_RANGE_RE.match((resp.header("content-range") or "").strip())
        if match is None:
            raise _ChunkError(f"{resp.url}: 206 without a usable Content-Range")
        got_start, got_end, total = int(match.group(1)), int(match.group(2)), match.group(3)
        if got_start != start or got_end != end - 1 or (total != "*" and int(total) != size):
            raise _ChunkError(
                f"{resp.url}: asked for bytes {start}-{end - 1}/{size}, got {got_start}-{got_end}/{total}"
            )
