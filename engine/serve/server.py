"""The socket side, kept thin: h11 on trio streams, one task per connection, bounded.

Two bounds, so that idle or slow clients cannot keep a request from being answered: at most
``max_requests`` requests are answered at once (a connection takes a request slot only once a
whole request head has arrived, and gives it back after the response), and at most
``max_connections`` connections are open, idle ones included; :mod:`.connections` closes the
longest-idle one to make room for a new one and limits connections per client. A new connection
must send a whole request head within ``header_timeout`` of its accept; a kept-alive one waits at
most ``idle_timeout`` for the first byte of its next request, then ``header_timeout`` for the rest
of that head. These are deadlines for the whole head, so a client sending a byte at a time gains
nothing. Any single send or body receive is bounded by ``io_timeout``.

Blob bodies go out with ``sendfile`` (no copy through Python; h11 is told their length, as its
docs describe) in worker threads on the non-blocking socket, so the event loop never blocks on the
disk; when the socket is full the connection waits for it to drain. The access log line of a
request is written from what went out on the wire: the status sent, the body bytes sent, and
"cut short" when the body stopped before its Content-Length. :meth:`Server.shutdown` stops
accepting, closes idle keep-alive connections at once, and gives requests in flight
``shutdown_grace`` seconds to finish.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import BinaryIO, cast

import h11
import trio

from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.store import Store

from .arrivals import Arrivals
from .connections import ConnectionTable, Tracked, client_of
from .messages import BlobSlice, Request, ServerResponse, error
from .routes import blob_response, peer_blob_request, route
from .source import CatalogSource

log = logging.getLogger("gadgetstore.serve")

_ACCEPT_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_RECEIVE_SIZE = 64 * 1024
_MAX_HEADER_BYTES = 16 * 1024
_MAX_DISCARDED_BODY = 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    max_requests: int = 128  # answered at once
    max_connections: int = 512  # open at once, idle ones included
    max_client_connections: int = 32  # open at once per client address; 0: no limit
    limit_loopback: bool = False  # loopback clients count against max_client_connections too
    header_timeout: float = 10.0
    idle_timeout: float = 30.0
    io_timeout: float = 60.0
    chunk_size: int = 1024 * 1024
    disk_threads: int = 8
    refresh_interval: float = 1.0
    shutdown_grace: float = 5.0
    peer_blobs: bool | None = None  # blobs by digest from the whole store, waited for (peers); None: off


class _FileBytes:
    """Stands for ``length`` blob bytes in h11's bookkeeping; the bytes themselves go by sendfile."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


def _sendfile_some(out_fd: int, in_fd: int, offset: int, count: int) -> int | None:
    """Blocking on the disk only: one sendfile; None when the (non-blocking) socket is full."""
    try:
        return os.sendfile(out_fd, in_fd, offset, count)
    except BlockingIOError:
        return None
    except OSError as err:  # the peer went away
        raise trio.BrokenResourceError(str(err)) from err


def _cork(sock: trio.socket.SocketType, on: bool) -> None:
    """Hold the head back until the body follows, so a small blob still goes out in one segment."""
    if hasattr(socket, "TCP_CORK"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))
        except OSError:
            pass


class _Damaged(Exception):
    """A blob file whose size differs from its descriptor: unknown before its head went out, else cut short.

    Internal: the connection answers 404 or closes, and logs it; it never leaves the server."""


@dataclass
class _Sent:
    """What went out on the wire for one request: the access log reports this, not what was meant."""

    status: int | None = None
    length: int = 0  # the Content-Length sent with the head
    body: int = 0  # body bytes written
    complete: bool = False


class Server:
    def __init__(self, store: Store, config: ServeConfig | None = None) -> None:
        self.config = config or ServeConfig()
        self.blobs = store.blobs
        self.source = CatalogSource(store, self.config.refresh_interval)
        self.arrivals = Arrivals(store.blobs, max_waiting=max(1, self.config.max_requests // 2))
        self.connections = ConnectionTable(self.config.max_connections, self.config.max_client_connections,
                                           self.config.limit_loopback)
        self.requests = trio.Semaphore(self.config.max_requests)
        self.disk = trio.CapacityLimiter(self.config.disk_threads)
        self._stop = trio.Event()
        self.draining = False
        self._refusing: set[str] = set()  # clients refused since they last had a connection admitted or none open

    def shutdown(self) -> None:
        self._stop.set()

    async def serve(
        self, listeners: list[trio.SocketListener], *, task_status: trio.TaskStatus[list[tuple[str, int]]]
    ) -> None:
        """Serve until :meth:`shutdown`; reports the bound (host, port) pairs once accepting."""
        try:
            await self.source.current()
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as accepting:
                    for listener in listeners:
                        accepting.start_soon(self._accept_loop, listener, connections)
                    if self.config.peer_blobs:
                        accepting.start_soon(self.arrivals.run)
                    task_status.started([listener.socket.getsockname()[:2] for listener in listeners])
                    await self._stop.wait()
                    accepting.cancel_scope.cancel()
                for listener in listeners:  # refuse new connections at once, not after the drain
                    await listener.aclose()
                self.draining = True
                self.connections.close_idle()
                connections.cancel_scope.deadline = trio.current_time() + self.config.shutdown_grace
        finally:
            for listener in listeners:
                await listener.aclose()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            await self.connections.wait_for_room()
            try:
                stream = await listener.accept()
            except OSError as err:
                if err.errno not in _ACCEPT_RESOURCE_ERRNOS:
                    raise
                log.warning("accept failed (%s); retrying shortly", os.strerror(err.errno or 0))
                await trio.sleep(0.1)
                continue
            try:  # the idle connection that made room may have sent its next request meanwhile
                await self.connections.wait_for_room()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            tracked = self._admit(stream)
            if tracked is None:
                await stream.aclose()
            else:
                nursery.start_soon(self._connection, stream, tracked)

    def _admit(self, stream: trio.SocketStream) -> Tracked | None:
        try:
            client = client_of(stream.socket.getpeername())
        except OSError:  # already gone
            return None
        tracked = self.connections.admit(client)
        if tracked is not None:
            self._refusing.discard(client)
        elif client not in self._refusing:  # once while the client stays at its limit
            self._refusing.add(client)
            log.warning("refusing connections from %s: it has %d open, none idle (--max-client-connections)",
                        client, self.connections.connections_of(client))
        return tracked

    async def _connection(self, stream: trio.SocketStream, tracked: Tracked) -> None:
        try:
            await _Connection(self, stream, tracked).run()
        except _Damaged as err:
            log.warning("closing the connection: %s", err)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, h11.ProtocolError) as err:
            log.debug("connection closed: %r", err)
        except Exception:
            log.exception("unexpected error; closing the connection")
        finally:
            self.connections.release(tracked)
            if not self.connections.connections_of(tracked.client):
                self._refusing.discard(tracked.client)
            await stream.aclose()

    def open_blob(self, blob: BlobSlice) -> BinaryIO:
        """Blocking: open the blob and check its size against the descriptor that led here."""
        f = self.blobs.open(blob.digest)
        if os.fstat(f.fileno()).st_size != blob.size:
            f.close()
            raise _Damaged(f"blob {blob.digest} has the wrong size in the store")
        return f


class _Connection:
    def __init__(self, server: Server, stream: trio.SocketStream, tracked: Tracked) -> None:
        self.server = server
        self.config = server.config
        self.stream = stream
        self.tracked = tracked
        self.fresh = True  # no request yet: the head's deadline counts from the accept
        self.sent = _Sent()
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
        try:
            host, port = stream.socket.getpeername()[:2]
            self.peer = f"{host}:{port}"
        except OSError:
            self.peer = "?"

    async def run(self) -> None:
        while True:
            try:
                event = await self._wait_for_request()
            except h11.RemoteProtocolError as err:
                await self._reject(err)
                return
            if event is None:
                return
            async with self.server.requests:
                await self._answer(event)
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return
            self.h11.start_next_cycle()

    async def _wait_for_request(self) -> h11.Request | None:
        """The next request's head, or None on close, timeout, shutdown, or being closed for room."""
        if self.server.draining:
            return None
        scope = self.server.connections.idle(self.tracked)
        between_requests = not self.fresh and not self.h11.trailing_data[0]  # no byte of the next head yet
        if self.fresh:
            scope.deadline = self.tracked.accepted + self.config.header_timeout
        else:
            scope.deadline = trio.current_time() + (
                self.config.idle_timeout if between_requests else self.config.header_timeout)
        self.fresh = False
        event: h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED] | None = None
        try:
            with scope:
                event = await self._next_event(scope if between_requests else None)
        finally:
            self.server.connections.busy(self.tracked)
        if self.tracked.evicted or scope.cancelled_caught or not isinstance(event, h11.Request):
            return None
        return event

    async def _next_event(
        self, head_starts: trio.CancelScope | None = None
    ) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """The next h11 event; the first bytes received give ``head_starts`` the header deadline."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(_RECEIVE_SIZE)
            if data and head_starts is not None:
                head_starts.deadline = trio.current_time() + self.config.header_timeout
                head_starts = None
            self.h11.receive_data(data)

    async def _send(self, *events: h11.Event) -> None:
        """Send events as one write (a head and a small body go out in one TCP segment); note them in ``sent``."""
        pieces: list[bytes] = []
        head: h11.Response | None = None
        body = 0
        for event in events:
            if isinstance(event, h11.Data):
                pieces.extend(self.h11.send_with_data_passthrough(event) or ())  # no copy of blob chunks
                body += len(event.data)
            else:
                pieces.append(self.h11.send(event) or b"")
                if isinstance(event, h11.Response):
                    head = event
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if data:
            with trio.fail_after(self.config.io_timeout):
                await self.stream.send_all(data)
        if head is not None:
            self.sent.status = head.status_code
            self.sent.length = next((int(v) for n, v in head.headers if n == b"content-length"), 0)
        self.sent.body += body
        self.sent.complete = isinstance(events[-1], h11.EndOfMessage)

    def _log_access(self, request_line: str) -> None:
        sent = self.sent
        if sent.status is None:
            outcome = "- 0 (no response sent)"
        elif sent.complete:
            outcome = f"{sent.status} {sent.body}"
        else:
            outcome = f"{sent.status} {sent.body} (cut short of {sent.length})"
        log.info('%s "%s" %s', self.peer, request_line, outcome)

    async def _reject(self, err: h11.RemoteProtocolError) -> None:
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            response = error(err.error_status_hint, "UNSUPPORTED", f"malformed HTTP request: {err}")
            self.sent = _Sent()
            try:
                await self._send_response(response.with_headers(("Connection", "close")), head=False)
            finally:
                self._log_access("-")

    async def _answer(self, event: h11.Request) -> None:
        request = _request_of(event)
        self.sent = _Sent()
        try:
            await self._respond(event, request)
        finally:
            self._log_access(f"{request.method} {request.target}")

    async def _respond(self, event: h11.Request, request: Request) -> None:
        close = False
        if len(event.target) + sum(len(n) + len(v) for n, v in event.headers) > _MAX_HEADER_BYTES:
            # h11 bounds only heads that arrive in pieces; one large read must be bounded here.
            too_large = error(431, "UNSUPPORTED", "request header fields too large")
            await self._send_response(too_large.with_headers(("Connection", "close")), head=False)
            return
        if self.h11.their_state is h11.SEND_BODY:
            close = self.h11.they_are_waiting_for_100_continue or not await self._discard_body()
        try:
            response = await self._route(request)
        except Exception:
            log.exception("failed to answer %s %s", request.method, request.target)
            response = error(500, "UNKNOWN", "internal error while answering the request")
        if close:
            response = response.with_headers(("Connection", "close"))
        head = request.method.upper() == "HEAD"
        if response.blob is not None:
            await self._send_blob(response, response.blob, head)
        else:
            await self._send_response(response, head)

    async def _route(self, request: Request) -> ServerResponse:
        peer = peer_blob_request(request) if self.config.peer_blobs else None
        if peer is None:
            return route(request, await self.server.source.current())
        digest, wait = peer
        size = await self.server.arrivals.size(digest, wait)
        return blob_response(digest, size, request if request.method.upper() == "GET" else None)

    async def _discard_body(self) -> bool:
        """Read a request body we will not use (push attempts); False when it is too large."""
        budget = _MAX_DISCARDED_BODY
        with trio.fail_after(self.config.io_timeout):
            while True:
                event = await self._next_event()
                if isinstance(event, h11.EndOfMessage):
                    return True
                if not isinstance(event, h11.Data):
                    return False
                budget -= len(event.data)
                if budget < 0:
                    return False

    async def _send_response(self, response: ServerResponse, head: bool) -> None:
        body = [h11.Data(data=response.body)] if response.body and not head else []
        await self._send(_head_of(response), *body, h11.EndOfMessage())

    async def _send_blob(self, response: ServerResponse, blob: BlobSlice, head: bool) -> None:
        try:
            f = await trio.to_thread.run_sync(self.server.open_blob, blob, limiter=self.server.disk)
        except (GadgetStoreError, _Damaged, OSError) as err:
            log.warning("cannot serve %s: %s", blob.digest, err)
            missing = error(404, "BLOB_UNKNOWN", f"blob {blob.digest} is not available in the store")
            await self._send_response(missing, head)
            return
        try:
            if head:
                await self._send(_head_of(response), h11.EndOfMessage())
                return
            sock = self.stream.socket
            _cork(sock, True)
            try:
                await self._send(_head_of(response))
                # h11 counts the body against Content-Length; the bytes go by sendfile instead.
                self.h11.send_with_data_passthrough(h11.Data(data=cast(bytes, _FileBytes(blob.length))))
                await self._sendfile(sock, f, blob)
                await self._send(h11.EndOfMessage())
            finally:
                _cork(sock, False)
        finally:
            f.close()

    async def _sendfile(self, sock: trio.socket.SocketType, f: BinaryIO, blob: BlobSlice) -> None:
        offset, end = blob.offset, blob.offset + blob.length
        while offset < end:
            count = min(self.config.chunk_size, end - offset)
            sent = await trio.to_thread.run_sync(_sendfile_some, sock.fileno(), f.fileno(), offset, count,
                                                 limiter=self.server.disk)
            if sent is None:
                with trio.fail_after(self.config.io_timeout):
                    await trio.lowlevel.wait_writable(sock)
            elif sent == 0:
                raise _Damaged(f"blob {blob.digest} ended early on disk")
            else:
                offset += sent
                self.sent.body += sent


def _head_of(response: ServerResponse) -> h11.Response:
    try:
        reason = HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b""
    return h11.Response(status_code=response.status, headers=response.wire_headers(), reason=reason)


def _request_of(event: h11.Request) -> Request:
    headers: dict[str, str] = {}
    for raw_name, raw_value in event.headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Request(event.method.decode("ascii"), event.target.decode("latin-1"), headers)
