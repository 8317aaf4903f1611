"""A small pooled HTTP/1.1 client on trio sockets and h11.

Why not httpx: on two cores the cost per request is the bottleneck of a bulk pull, and a bare h11
exchange over kept-alive trio sockets is several times cheaper. This layer knows nothing about
registries: no auth, no redirects, no retries — :mod:`.client` performs those (deciding through
:mod:`.authflow` and :mod:`.retry`).

One :class:`Pool` keeps idle keep-alive connections per origin and bounds the connections in use
per origin with a semaphore. A :class:`ClientResponse` owns its connection until its body is read to the
end (then the connection goes back to the pool) or it is closed early (then the connection is
dropped, since its unread body would poison the next exchange).

Bodies with a ``Content-Length`` on a keep-alive HTTP/1.1 connection are read straight from the
socket once h11 has handed over what it buffered with the head: h11 would copy every byte into
and out of its receive buffer, which on two cores costs a large share of a big blob's pull. The
exact length is still enforced (a short body is an error, nothing past it is read), and the
connection then starts a fresh h11 state machine for its next exchange. :meth:`ClientResponse.readinto`
goes one step further for such bodies on a plain TCP socket: ``recv_into`` the caller's (reused)
buffer, so no fresh buffer is allocated and page-faulted per read; other bodies (chunked, TLS,
close-delimited) are copied into it from the path :meth:`ClientResponse.iter_chunks` takes.

Every read and write of an exchange is bounded twice: by the idle ``read_timeout`` and by the
exchange's :class:`~.stall.RateMeter` (a transfer that trickles below the floor is stalled, however
often a byte arrives). A TLS handshake answered in plain HTTP is named as such, with the flag that
reaches that registry. Each request is listed in :class:`~.inflight.InFlight` from its start until
its body is read or dropped, for the line a command's ``--timeout`` prints.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import h11
import trio

from ..asciidigits import parse_decimal
from .errors import InvalidHeader, TransportError
from .inflight import InFlight, request_label
from .stall import RateMeter, StallPolicy

RECEIVE_SIZE = 256 * 1024
SEND_PIECE = 256 * 1024  # large bodies go out in pieces, each bounded and counted by the stall meter
RAW_RECEIVE_SIZE = 1024 * 1024  # body reads past h11: fewer, larger reads (the kernel buffers more than this)
USER_AGENT = "gadgetstore/0.1"
DEFAULT_PORTS = {"http": 80, "https": 443}

Headers = Sequence[tuple[str, str]]
T = TypeVar("T")

# Every response header this client or its callers read, as named in messages. Their values must be
# visible ASCII (spaces and tabs inside allowed): h11 lets control bytes and bytes past 0x7f through,
# and such a value would end up in a request line or an error message. Checked as the head arrives.
READ_HEADERS = {
    "connection": "Connection", "content-length": "Content-Length", "content-range": "Content-Range",
    "content-type": "Content-Type", "docker-content-digest": "Docker-Content-Digest", "link": "Link",
    "location": "Location", "oci-subject": "OCI-Subject", "retry-after": "Retry-After",
    "transfer-encoding": "Transfer-Encoding", "www-authenticate": "WWW-Authenticate",
}
MAX_SHOWN = 80  # characters of a bad value an error message shows


class BodyTooLarge(TransportError):
    """A body was longer than the caller allowed; never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class PlainHTTPError(TransportError):
    """A TLS handshake was answered in plain HTTP: the registry must be reached with http://."""

    def __init__(self, netloc: str) -> None:
        super().__init__(f"{netloc} is plain HTTP: add --insecure-registries {netloc}", retriable=False)
        self.netloc = netloc


class TransferStalled(trio.TooSlowError):
    """An exchange moved fewer bytes than its stall policy's floor over its window.

    Internal: a ``trio.TooSlowError`` so the exchange fails as a timeout would; every exchange turns it
    into a :class:`~gadgetstore.engine.registry.errors.TransportError` that names the stall."""


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


def escaped(text: str, limit: int = MAX_SHOWN) -> str:
    """A header value quoted for a one-line message: control and non-ASCII characters as escapes,
    cut at ``limit``."""
    return ascii(text if len(text) <= limit else text[:limit] + "...")


def one_line(text: str, limit: int) -> str:
    """A registry's own words (a reason phrase, an error body) for a message: whitespace runs as
    one space, other unprintable characters escaped (never sent to a terminal as they are), cut at
    ``limit``."""
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[:limit] + "..."
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _is_visible_ascii(value: str) -> bool:
    if value.isascii() and value.isprintable():  # every header of a normal answer: no loop in Python
        return True
    return all(" " <= c <= "~" or c == "\t" for c in value)


def check_headers(origin: Origin, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """Refuse a response whose header we read has a value that is not visible ASCII."""
    for raw_name, raw_value in headers:
        name = READ_HEADERS.get(raw_name.decode("latin-1"))
        if name is not None:
            value = raw_value.decode("latin-1")
            if not _is_visible_ascii(value):
                raise InvalidHeader(f"{origin}: invalid {name} header {escaped(value)}: "
                                    "a header value must be visible ASCII")


def join_url(base: str, reference: str, header: str) -> str:
    """``reference``, the URL a ``header`` of the answer from ``base`` gave, made absolute: an
    http(s) URL with a host and without spaces, or :class:`InvalidHeader`."""
    try:
        url = urljoin(base, reference)
        split_url(url)
    except (ValueError, TransportError):
        url = ""
    if not url or not _is_visible_ascii(url) or " " in url or "\t" in url:
        raise InvalidHeader(f"{origin_of(base)}: {header} header {escaped(reference)} is not a usable http(s) URL")
    return url
class _FirstBytes(trio.abc.Stream):
    """A TCP stream that keeps the first bytes its peer sent: what a failed TLS handshake got back."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.head = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.stream.receive_some(max_bytes)
        if len(self.head) < 5:
            self.head += bytes(data[:5 - len(self.head)])
        return data

    async def aclose(self) -> None:
        await self.stream.aclose()


class Connection:
    """One socket (TLS or not) with its h11 state machine."""

    def __init__(self, origin: Origin, stream: trio.abc.Stream, read_timeout: float,
                 stall: StallPolicy | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.origin = origin
        self.tls = tls  # what the server was verified with (None: plain HTTP)
        self.stream = stream
        self.read_timeout = read_timeout
        self.stall = stall or StallPolicy()
        self.meter: RateMeter | None = None
        self.h11 = h11.Connection(h11.CLIENT)

    def start_exchange(self, grace: float = 0.0) -> None:
        """A new request: its stall meter starts now (``grace``: see :class:`~.stall.RateMeter`)."""
        self.meter = RateMeter(self.stall, trio.current_time(), grace) if self.stall.enabled else None

    async def _bounded(self, step: Callable[[], Awaitable[T]]) -> T:
        """``step()`` under the idle timeout and the stall deadline, whichever comes first."""
        now = trio.current_time()
        idle = now + self.read_timeout
        stall = self.meter.wait_deadline(now) if self.meter is not None else math.inf
        with trio.move_on_at(min(idle, stall)):
            return await step()
        if stall <= idle:
            raise TransferStalled(self.stall.describe())
        raise trio.TooSlowError

    def _count(self, size: int) -> None:
        if self.meter is not None:
            self.meter.add(trio.current_time(), size)

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if not data:
            return
        view = memoryview(data)
        for start in range(0, len(view), SEND_PIECE):
            piece = view[start:start + SEND_PIECE]
            await self._bounded(lambda: self.stream.send_all(piece))  # noqa: B023 - awaited at once
            self._count(len(piece))

    async def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self._bounded(lambda: self.stream.receive_some(RECEIVE_SIZE))
            self._count(len(data))
            self.h11.receive_data(bytes(data))

    def reusable(self) -> bool:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        # a fresh state machine after a body read past h11 (see ClientResponse._iter_raw)
        return self.h11.our_state is h11.IDLE and self.h11.their_state is h11.IDLE

    async def receive_raw(self, max_bytes: int) -> bytes:
        """Bytes straight from the socket, bypassing h11; only for a body whose length h11 left to us."""
        data = bytes(await self._bounded(lambda: self.stream.receive_some(max_bytes)))
        self._count(len(data))
        return data

    async def receive_raw_into(self, view: memoryview) -> int:
        """Like :meth:`receive_raw`, into ``view`` (not empty); 0 when the peer closed. A plain TCP
        stream receives in place; a TLS one copies what it decrypted."""
        stream = self.stream
        if isinstance(stream, trio.SocketStream):
            got = await self._bounded(lambda: stream.socket.recv_into(view, len(view)))
        else:
            data = await self._bounded(lambda: stream.receive_some(len(view)))
            view[:len(data)] = data
            got = len(data)
        self._count(got)
        return got

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def _transport_error(err: BaseException, origin: Origin, what: str) -> TransportError:
    """Name the failure for a user; certificate problems are not worth a retry."""
    if isinstance(err, TransferStalled):
        return TransportError(f"{origin}: stalled while {what} ({err})")
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


class ClientResponse:
    """Status and headers of one exchange; the body is streamed on demand."""

    def __init__(
        self, pool: Pool, conn: Connection, slot: trio.Semaphore, url: str, method: str, head: h11.Response,
        label: str = "",
    ) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self._slot = slot
        self._label = label  # in the pool's InFlight until the body is read or dropped
        self.url = url
        self.method = method
        self.status = head.status_code
        self.reason = one_line(head.reason.decode("latin-1"), MAX_SHOWN)  # shown in error messages
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
            self._pool.in_flight.leave(self._label)

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

    async def __aenter__(self) -> ClientResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Pool:
    """Keep-alive connections per origin, at most ``max_per_origin`` of them busy at once.

    ``ssl_context`` gives the context an https origin is verified with when a request names none;
    it is awaited, since building one reads CA files (blocking I/O belongs in a worker thread). A
    kept-alive connection is reused only by requests that verify its origin with the same context.
    """

    def __init__(
        self,
        ssl_context: Callable[[Origin], Awaitable[ssl.SSLContext]],
        max_per_origin: int = 8,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
        stall: StallPolicy | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self.max_per_origin = max_per_origin
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.stall = stall or StallPolicy()
        self.in_flight = in_flight or InFlight()
        self._idle: dict[tuple[Origin, ssl.SSLContext | None], list[Connection]] = {}
        self._slots: dict[Origin, trio.Semaphore] = {}
        self.connections_opened = 0

    def idle_connections(self) -> list[Connection]:
        """The kept-alive connections waiting for their next request, of every origin."""
        return [conn for conns in self._idle.values() for conn in conns]

    async def request(self, method: str, url: str, headers: Headers = (), body: bytes | None = None,
                      head_grace: float = 0.0, tls: ssl.SSLContext | None = None) -> ClientResponse:
        """Send one request and return once the response head arrived. ``head_grace`` seconds are
        added to the stall check's first window (a server asked to hold the request that long);
        ``tls`` verifies an https origin (None: the pool's ``ssl_context`` for it)."""
        origin, target = split_url(url)
        if origin.scheme != "https":
            tls = None
        elif tls is None:
            tls = await self._ssl_context(origin)
        label = request_label(method, url)
        self.in_flight.enter(label)
        try:
            slot = self._slots.setdefault(origin, trio.Semaphore(self.max_per_origin))
            await slot.acquire()
        except BaseException:
            self.in_flight.leave(label)
            raise
        try:
            wire_headers = [("Host", origin.netloc), ("User-Agent", USER_AGENT), *headers]
            if body is not None or method in ("POST", "PUT", "PATCH"):
                wire_headers.append(("Content-Length", str(len(body or b""))))
            for attempt in range(2):
                conn, reused = await self._checkout(origin, tls)
                conn.start_exchange(head_grace)
                try:
                    head = await self._exchange(conn, method, target, wire_headers, body)
                    check_headers(origin, head.headers)  # the connection is dropped below if not
                except _NETWORK_ERRORS as err:
                    with trio.CancelScope(shield=True):
                        await conn.aclose()
                    if reused and attempt == 0 and not isinstance(err, trio.TooSlowError):
                        # the server had closed the kept-alive connection: try a fresh one. A timeout
                        # or stall is no such case: the server may have taken the request.
                        continue
                    raise _transport_error(err, origin, f"waiting for the answer to {method} {target}") from err
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await conn.aclose()
                    raise
                return ClientResponse(self, conn, slot, url, method, head, label)
            raise AssertionError("unreachable")
        except BaseException:
            slot.release()
            self.in_flight.leave(label)
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

    async def _checkout(self, origin: Origin, tls: ssl.SSLContext | None) -> tuple[Connection, bool]:
        idle = self._idle.get((origin, tls))
        if idle:
            return idle.pop(), True
        answer: _FirstBytes | None = None
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(origin.host, origin.port)
                if tls is not None:
                    answer = _FirstBytes(stream)
                    secure = trio.SSLStream(answer, tls, server_hostname=origin.host, https_compatible=True)
                    await secure.do_handshake()
                    stream = secure
        except BaseException as err:
            if stream is not None:  # a failed handshake leaves the TCP stream open
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
            if not isinstance(err, _NETWORK_ERRORS):
                raise
            if answer is not None and answer.head.startswith(b"HTTP/"):
                raise PlainHTTPError(origin.netloc) from err
            raise _transport_error(err, origin, "connecting") from err
        assert stream is not None
        self.connections_opened += 1
        return Connection(origin, stream, self.read_timeout, self.stall, tls), False

    def _checkin(self, conn: Connection) -> None:
        self._idle.setdefault((conn.origin, conn.tls), []).append(conn)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        with trio.CancelScope(shield=True):
            for conns in idle.values():
                for conn in conns:
                    await conn.aclose()
