"""A small pooled HTTP/1.1 client on trio sockets and h11.

Why not httpx: on two cores the cost per request is the bottleneck of a bulk pull, and a bare h11
exchange over kept-alive trio sockets is several times cheaper. This layer knows nothing about
registries: no auth, no redirects, no retries — those live in :mod:`.client`.

One :class:`Pool` keeps idle keep-alive connections per origin and bounds the connections in use
per origin with a semaphore. A :class:`Response` owns its connection until its body is read to the
end (then the connection goes back to the pool) or it is closed early (then the connection is
dropped, since its unread body would poison the next exchange).

Bodies with a ``Content-Length`` on a keep-alive HTTP/1.1 connection are read straight from the
socket once h11 has handed over what it buffered with the head: h11 would copy every byte into
and out of its receive buffer, which on two cores costs a large share of a big blob's pull. The
exact length is still enforced (a short body is an error, nothing past it is read), and the
connection then starts a fresh h11 state machine for its next exchange. :meth:`Response.readinto`
goes one step further for such bodies on a plain TCP socket: ``recv_into`` the caller's (reused)
buffer, so no fresh buffer is allocated and page-faulted per read; other bodies (chunked, TLS,
close-delimited) are copied into it from the path :meth:`Response.iter_chunks` takes.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

import h11
import trio

from ..asciidigits import parse_decimal
from .errors import TransportError

RECEIVE_SIZE = 256 * 1024
RAW_RECEIVE_SIZE = 1024 * 1024  # body reads past h11: fewer, larger reads (the kernel buffers more than this)
USER_AGENT = "gadgetstore/0.1"
DEFAULT_PORTS = {"http": 80, "https": 443}

Headers = Sequence[tuple[str, str]]


class BodyTooLarge(TransportError):
    """A body was longer than the caller allowed; never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS.get(self.scheme) == self.port else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"


def split_url(url: str) -> tuple[Origin, str]:
    """(origin, request target) of an absolute http(s) URL; default ports made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise TransportError(f"unsupported URL {url!r}", retriable=False)
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise TransportError(f"invalid port in URL {url!r}", retriable=False) from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Origin(scheme, parts.hostname.lower(), port), target


def origin_of(url: str) -> Origin:
    return split_url(url)[0]


class Connection:
    """One socket (TLS or not) with its h11 state machine."""

    def __init__(self, origin: Origin, stream: trio.abc.Stream, read_timeout: float) -> None:
        self.origin = origin
        self.stream = stream
        self.read_timeout = read_timeout
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.send_all(data)

    async def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            with trio.fail_after(self.read_timeout):
                data = await self.stream.receive_some(RECEIVE_SIZE)
            self.h11.receive_data(bytes(data))

    def reusable(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        # a fresh state machine after a body read past h11 (see Response._iter_raw)
        return self.h11.our_state is h11.IDLE and self.h11.their_state is h11.IDLE

    async def receive_raw(self, max_bytes: int) -> bytes:
        """Bytes straight from the socket, bypassing h11; only for a body whose length h11 left to us."""
        with trio.fail_after(self.read_timeout):
            return bytes(await self.stream.receive_some(max_bytes))

    async def receive_raw_into(self, view: memoryview) -> int:
        """Like :meth:`receive_raw`, into ``view`` (not empty); 0 when the peer closed. A plain TCP
        stream receives in place; a TLS one copies what it decrypted."""
        with trio.fail_after(self.read_timeout):
            if isinstance(self.stream, trio.SocketStream):
                return await self.stream.socket.recv_into(view, len(view))
            data = await self.stream.receive_some(len(view))
        view[:len(data)] = data
        return len(data)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def _transport_error(err: BaseException, origin: Origin, what: str) -> TransportError:
    """Name the failure for a user; certificate problems are not worth a retry."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return TransportError(f"{origin}: TLS certificate not trusted: {cause.verify_message}", retriable=False)
        if isinstance(cause, ssl.SSLError):
            return TransportError(f"{origin}: TLS error: {cause.reason or cause}", retriable=False)
        cause = cause.__cause__ or cause.__context__
    if isinstance(err, trio.TooSlowError):
        return TransportError(f"{origin}: timed out while {what}")
    detail = str(err) or type(err).__name__
    return TransportError(f"{origin}: connection failed while {what}: {detail}")


_NETWORK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, h11.ProtocolError)


class Response:
    """Status and headers of one exchange; the body is streamed on demand."""

    def __init__(
        self, pool: Pool, conn: Connection, slot: trio.Semaphore, url: str, method: str, head: h11.Response
    ) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self._slot = slot
        self.url = url
        self.method = method
        self.status = head.status_code
        self.reason = head.reason.decode("latin-1", "replace")
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers]
        self._done = False
        self._raw_length = self._raw_body_length(head)
        # readinto's state: body bytes the socket has still to deliver past h11 (None: h11 delivers
        # all), whether h11's buffered part was taken, and the rest of a piece that did not fit.
        self._raw_remaining = self._raw_length
        self._h11_drained = False
        self._spill = memoryview(b"")
        self._reading: str | None = None  # "chunks" or "into": a body is read one way only

    def _raw_body_length(self, head: h11.Response) -> int | None:
        """The body length when the body may be read past h11 and the connection kept; else None."""
        if self.method == "HEAD" or self.status in (204, 304) or head.http_version != b"1.1":
            return None
        lengths = self.header_all("content-length")
        if len(lengths) != 1 or self.header("transfer-encoding") is not None:
            return None
        if any(token.strip().lower() == "close" for value in self.header_all("connection")
               for token in value.split(",")):
            return None
        return parse_decimal(lengths[0].strip())

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def _claim(self, how: str) -> None:
        if self._reading not in (None, how):
            raise RuntimeError(f"{self.url}: body already being read with {self._reading}")
        self._reading = how

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Yield body pieces as they arrive; the connection returns to the pool at the end."""
        conn = self._conn
        if conn is None:
            return
        self._claim("chunks")
        if self._raw_length is not None:
            async for piece in self._iter_raw(conn, self._raw_length):
                yield piece
            return
        try:
            while True:
                event = await conn.next_event()
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._done = True
                    break
                else:
                    raise TransportError(f"{conn.origin}: connection closed in the middle of a response body")
        except _NETWORK_ERRORS as err:
            raise _transport_error(err, conn.origin, "reading a response body") from err
        finally:
            if self._done:
                await self._release(keep=True)

    async def _iter_raw(self, conn: Connection, length: int) -> AsyncIterator[bytes]:
        """Content-Length body: what h11 buffered with the head, then the socket itself."""
        remaining = length
        try:
            while True:
                event = conn.h11.next_event()  # no I/O: only what arrived with the head
                if isinstance(event, h11.Data):
                    remaining -= len(event.data)
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._done = True
                    return
                elif event is h11.NEED_DATA:
                    break
                else:
                    raise TransportError(f"{conn.origin}: connection closed in the middle of a response body")
            while remaining > 0:
                data = await conn.receive_raw(min(RAW_RECEIVE_SIZE, remaining))
                if not data:
                    raise TransportError(f"{conn.origin}: connection closed in the middle of a response body")
                remaining -= len(data)
                yield data
            conn.h11 = h11.Connection(h11.CLIENT)  # the old one still waits for the bytes we took
            self._done = True
        except _NETWORK_ERRORS as err:
            raise _transport_error(err, conn.origin, "reading a response body") from err
        finally:
            if self._done:
                await self._release(keep=True)

    async def readinto(self, view: memoryview | bytearray) -> int:
        """Receive the next body bytes into ``view`` (at most its length); 0 only at the end of the
        body, when the connection has gone back to the pool. The body's length is enforced as by
        :meth:`iter_chunks`; a caller caps a body by the room it offers (offer one byte past the
        limit to detect a longer one). Errors are :class:`TransportError`; the response must then
        be closed (which drops the connection)."""
        room = memoryview(view).cast("B")
        if not len(room):
            raise ValueError("readinto needs a non-empty buffer")
        conn = self._conn
        if conn is None:
            if self._done:
                return 0
            raise RuntimeError(f"{self.url}: response closed before its body was read")
        self._claim("into")
        if len(self._spill):
            return self._from_spill(room)
        try:
            while True:
                if self._raw_remaining is None or not self._h11_drained:
                    if self._raw_remaining is None:
                        event = await conn.next_event()
                    else:
                        event = conn.h11.next_event()  # no I/O: only what arrived with the head
                    if isinstance(event, h11.Data):
                        if self._raw_remaining is not None:
                            self._raw_remaining -= len(event.data)
                        if not event.data:
                            continue
                        self._spill = memoryview(event.data)
                        return self._from_spill(room)
                    if isinstance(event, h11.EndOfMessage):
                        self._done = True
                        await self._release(keep=True)
                        return 0
                    if event is not h11.NEED_DATA or self._raw_remaining is None:
                        raise TransportError(f"{conn.origin}: connection closed in the middle of a response body")
                    self._h11_drained = True
                if self._raw_remaining <= 0:
                    await self._finish_raw(conn)
                    return 0
                got = await conn.receive_raw_into(room[:self._raw_remaining])
                if not got:
                    raise TransportError(f"{conn.origin}: connection closed in the middle of a response body")
                self._raw_remaining -= got
                if self._raw_remaining == 0:
                    await self._finish_raw(conn)  # hand the connection back as soon as the body is in
                return got
        except _NETWORK_ERRORS as err:
            raise _transport_error(err, conn.origin, "reading a response body") from err

    def _from_spill(self, room: memoryview) -> int:
        size = min(len(room), len(self._spill))
        room[:size] = self._spill[:size]
        self._spill = self._spill[size:]
        return size

    async def _finish_raw(self, conn: Connection) -> None:
        conn.h11 = h11.Connection(h11.CLIENT)  # the old one still waits for the bytes we took
        self._done = True
        await self._release(keep=True)

    async def read(self, limit: int) -> bytes:
        """The whole body, refusing more than ``limit`` bytes (the buffer grows only with data)."""
        parts: list[bytes] = []
        total = 0
        async for chunk in self.iter_chunks():
            total += len(chunk)
            if total > limit:
                await self.aclose()
                raise BodyTooLarge(f"{self.url}: response body is larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def discard(self, limit: int = 64 * 1024) -> None:
        """Drop the body: read a short one to keep the connection, else close it."""
        length = parse_decimal(self.header("content-length") or "")
        if self.method != "HEAD" and (length is None or length > limit):
            await self.aclose()
            return
        try:
            await self.read(limit)
        except TransportError:
            await self.aclose()

    async def _release(self, keep: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if keep and conn.reusable():
                self._pool._checkin(conn)
            else:
                with trio.CancelScope(shield=True):
                    await conn.aclose()
        finally:
            self._slot.release()

    async def aclose(self) -> None:
        bodiless = self.method == "HEAD" or self.status in (204, 304)
        if bodiless and self._conn is not None and not self._done:
            # h11 already knows these responses end right after the head.
            try:
                event = self._conn.h11.next_event()
                self._done = isinstance(event, h11.EndOfMessage)
            except h11.ProtocolError:
                self._done = False
        await self._release(keep=self._done)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Pool:
    """Keep-alive connections per origin, at most ``max_per_origin`` of them busy at once."""

    def __init__(
        self,
        ssl_context: Callable[[Origin], ssl.SSLContext],
        max_per_origin: int = 8,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
    ) -> None:
        self._ssl_context = ssl_context
        self.max_per_origin = max_per_origin
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: dict[Origin, list[Connection]] = {}
        self._slots: dict[Origin, trio.Semaphore] = {}
        self.connections_opened = 0
        self.requests_sent = 0

    async def request(self, method: str, url: str, headers: Headers = (), body: bytes | None = None) -> Response:
        """Send one request and return once the response head arrived."""
        origin, target = split_url(url)
        slot = self._slots.setdefault(origin, trio.Semaphore(self.max_per_origin))
        await slot.acquire()
        try:
            wire_headers = [("Host", origin.netloc), ("User-Agent", USER_AGENT), *headers]
            if body is not None or method in ("POST", "PUT", "PATCH"):
                wire_headers.append(("Content-Length", str(len(body or b""))))
            for attempt in range(2):
                conn, reused = await self._checkout(origin)
                try:
                    head = await self._exchange(conn, method, target, wire_headers, body)
                except _NETWORK_ERRORS as err:
                    with trio.CancelScope(shield=True):
                        await conn.aclose()
                    if reused and attempt == 0:
                        continue  # the server closed an idle keep-alive connection: try a fresh one
                    raise _transport_error(err, origin, f"sending {method} {target}") from err
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await conn.aclose()
                    raise
                self.requests_sent += 1
                return Response(self, conn, slot, url, method, head)
            raise AssertionError("unreachable")
        except BaseException:
            slot.release()
            raise

    async def _exchange(
        self, conn: Connection, method: str, target: str, headers: Headers, body: bytes | None
    ) -> h11.Response:
        await conn.send(h11.Request(method=method, target=target, headers=list(headers)))
        if body:
            await conn.send(h11.Data(data=body))
        await conn.send(h11.EndOfMessage())
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                return event
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} instead of a response")

    async def _checkout(self, origin: Origin) -> tuple[Connection, bool]:
        idle = self._idle.get(origin)
        if idle:
            return idle.pop(), True
        try:
            with trio.fail_after(self.connect_timeout):
                tcp = await trio.open_tcp_stream(origin.host, origin.port)
                stream: trio.abc.Stream = tcp
                if origin.scheme == "https":
                    tls = trio.SSLStream(
                        tcp, self._ssl_context(origin), server_hostname=origin.host, https_compatible=True
                    )
                    await tls.do_handshake()
                    stream = tls
        except _NETWORK_ERRORS as err:
            raise _transport_error(err, origin, "connecting") from err
        self.connections_opened += 1
        return Connection(origin, stream, self.read_timeout), False

    def _checkin(self, conn: Connection) -> None:
        self._idle.setdefault(conn.origin, []).append(conn)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        with trio.CancelScope(shield=True):
            for conns in idle.values():
                for conn in conns:
                    await conn.aclose()
