"""The pooled h11 client on its own: keep-alive, bounded pool, size caps; and challenge parsing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from gadgetstore.engine.registry.auth import parse_challenges
from gadgetstore.engine.registry.errors import TransportError
from gadgetstore.engine.registry.http import RAW_RECEIVE_SIZE, BodyTooLarge, ClientResponse, Pool, split_url
from tests.support import httpserver
from tests.support.fakes import FakeServer, Reply


@pytest.fixture
def echo() -> Iterator[FakeServer]:
    server = FakeServer(lambda req: Reply(200, {"Content-Type": "text/plain"}, req.path.encode() * 100))
    yield server
    server.close()


@contextlib.asynccontextmanager
async def _pool(limit: int = 2) -> AsyncIterator[Pool]:
    """A client pool for one test, closed at its end whatever happens."""
    pool = Pool(httpserver.plain_http_only, max_per_origin=limit, read_timeout=5)
    try:
        yield pool
    finally:
        await pool.aclose()


async def test_keep_alive_reuses_connections(echo: FakeServer) -> None:
    async with _pool() as pool:
        for i in range(5):
            async with await pool.request("GET", f"http://{echo.host}/x{i}") as resp:
                assert await resp.read(10_000) == f"/x{i}".encode() * 100
        assert pool.connections_opened == 1


async def test_pool_bounds_connections(echo: FakeServer) -> None:
    async with _pool(limit=2) as pool:
        async def get(i: int) -> None:
            async with await pool.request("GET", f"http://{echo.host}/{i}") as resp:
                await resp.read(10_000)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(get, i)
        assert pool.connections_opened <= 2


async def test_body_cap_and_early_close(echo: FakeServer) -> None:
    async with _pool() as pool:
        resp = await pool.request("GET", f"http://{echo.host}/abcdef")
        with pytest.raises(BodyTooLarge):
            await resp.read(50)
        async with await pool.request("GET", f"http://{echo.host}/ok") as resp:  # the pool is not poisoned
            assert await resp.read(10_000) == b"/ok" * 100


async def test_dead_idle_connection_is_replaced(echo: FakeServer) -> None:
    async with _pool() as pool:
        async with await pool.request("GET", f"http://{echo.host}/a") as resp:
            await resp.read(10_000)
        (idle,) = pool.idle_connections()
        await idle.stream.aclose()  # as if the server had dropped the kept-alive connection
        async with await pool.request("GET", f"http://{echo.host}/b") as resp:
            assert await resp.read(10_000) == b"/b" * 100
        assert pool.connections_opened == 2


async def test_large_body_read_past_h11_keeps_the_connection() -> None:
    """A Content-Length body bigger than one socket read arrives whole; the connection is reused."""
    big = bytes(range(256)) * ((3 * RAW_RECEIVE_SIZE) // 256) + b"tail"
    server = FakeServer(lambda req: Reply(200, {}, big if req.path == "/big" else b"small"))
    async with _pool() as pool:
        for _ in range(2):
            async with await pool.request("GET", f"http://{server.host}/big") as resp:
                assert await resp.read(len(big)) == big
            async with await pool.request("GET", f"http://{server.host}/small") as resp:
                assert await resp.read(100) == b"small"
        assert pool.connections_opened == 1
        server.close()


async def test_short_body_is_a_transport_error() -> None:
    """A body shorter than its Content-Length (the server then stalls) fails; nothing waits forever."""
    server = FakeServer(lambda req: Reply(200, {"Content-Length": "1000"}, b"only this"))
    pool = Pool(httpserver.plain_http_only, max_per_origin=2, read_timeout=0.5)
    try:
        resp = await pool.request("GET", f"http://{server.host}/short")
        with pytest.raises(TransportError):
            await resp.read(10_000)
        await resp.aclose()
    finally:
        await pool.aclose()
        server.close()


def test_split_url_and_challenges() -> None:
    origin, target = split_url("https://Reg.Example:443/v2/a/b/manifests/v1?x=1")
    assert (origin.scheme, origin.host, origin.port) == ("https", "reg.example", 443)
    assert target == "/v2/a/b/manifests/v1?x=1"
    assert str(origin) == "https://reg.example"
    (challenge,) = parse_challenges(
        ['Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push",'
         'error="insufficient_scope"']
    )
    assert challenge.scheme == "bearer"
    assert challenge.params == {"realm": "https://auth.example/token", "service": "reg",
                                "scope": "repository:a/b:pull,push", "error": "insufficient_scope"}
    basic, bearer = parse_challenges(['Basic realm="x"', 'Bearer realm="https://t/",service=s'])
    assert basic.scheme == "basic" and bearer.params["service"] == "s"


# --- ClientResponse.readinto against a scripted server: where the body bytes sit when they arrive ---

Script = list[bytes | float]  # bytes to send, or seconds to pause; b"" closes the connection


class ScriptedServer:
    """Answers the n-th request on any connection with ``scripts[n]`` (the last one repeats)."""

    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.requests = 0
        self.connections = 0
        self.port = 0

    async def serve(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(trio.serve_tcp, self._handle, 0)
        self.port = listeners[0].socket.getsockname()[1]

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        pending = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in pending:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    pending += data
                pending = pending.split(b"\r\n\r\n", 1)[1]
                script = self.scripts[min(self.requests, len(self.scripts) - 1)]
                self.requests += 1
                for step in script:
                    if isinstance(step, float):
                        await trio.sleep(step)
                    elif step:
                        await stream.send_all(step)
                    else:
                        return


def _head(length: int | None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return f"HTTP/1.1 200 OK\r\n{size}{extra}\r\n".encode()


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


async def _read_into(resp: ClientResponse, room: int) -> tuple[bytes, list[int]]:
    """The whole body through readinto with ``room`` bytes offered each time; the sizes returned."""
    buf = bytearray(room)
    out = bytearray()
    sizes: list[int] = []
    while got := await resp.readinto(memoryview(buf)):
        sizes.append(got)
        out += buf[:got]
    return bytes(out), sizes


BODY = bytes(range(256)) * 4000 + b"end"  # 1,024,003 bytes


@pytest.mark.parametrize("room", [1, 7, 4096, len(BODY) + 10])
async def test_readinto_body_split_between_h11_buffer_and_socket(room: int) -> None:
    """Head and the first bytes in one segment (h11 buffers them), the rest later from the socket;
    then the kept-alive connection answers the next request."""
    first = 1000 if room < 100 else 300_000  # small rooms: keep the 1-byte case quick
    body = BODY[:first + 5000] if room < 100 else BODY
    server = ScriptedServer([[_head(len(body)) + body[:first], 0.05, body[first:]], [_head(5) + b"hello"]])
    async with _pool() as pool, trio.open_nursery() as nursery:
        await server.serve(nursery)
        async with await pool.request("GET", f"http://127.0.0.1:{server.port}/a") as resp:
            data, sizes = await _read_into(resp, room)
            assert data == body
            assert max(sizes) <= room
            assert await resp.readinto(bytearray(8)) == 0  # stays at the end
        async with await pool.request("GET", f"http://127.0.0.1:{server.port}/b") as resp:
            assert await resp.read(100) == b"hello"
        assert (server.connections, pool.connections_opened, server.requests) == (1, 1, 2)
        nursery.cancel_scope.cancel()


async def test_readinto_short_reads_from_a_dribbling_server() -> None:
    """The body comes in many small segments: every readinto returns what there is, none is lost."""
    body = BODY[:20_000]
    steps: Script = [_head(len(body))]
    for start in range(0, len(body), 997):
        steps += [body[start:start + 997], 0.001]
    server = ScriptedServer([steps])
    async with _pool() as pool, trio.open_nursery() as nursery:
        await server.serve(nursery)
        async with await pool.request("GET", f"http://127.0.0.1:{server.port}/d") as resp:
            data, sizes = await _read_into(resp, 64 * 1024)
        assert data == body and len(sizes) > 1
        async with await pool.request("GET", f"http://127.0.0.1:{server.port}/d") as resp:
            assert (await _read_into(resp, 5000))[0] == body
        assert pool.connections_opened == 1
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("cut", [500, 200_000])  # inside h11's buffer / after it, from the socket
async def test_readinto_connection_dropped_mid_body(cut: int) -> None:
    server = ScriptedServer([[_head(len(BODY)) + BODY[:cut], 0.02, b""], [_head(2) + b"ok"]])
    async with _pool() as pool, trio.open_nursery() as nursery:
        await server.serve(nursery)
        resp = await pool.request("GET", f"http://127.0.0.1:{server.port}/x")
        buf = bytearray(64 * 1024)
        got = 0
        with pytest.raises(TransportError, match="middle of a response body"):
            while n := await resp.readinto(buf):
                got += n
        assert got == cut
        await resp.aclose()
        async with await pool.request("GET", f"http://127.0.0.1:{server.port}/y") as resp:
            assert await resp.read(10) == b"ok"  # a fresh connection: the broken one was dropped
        assert pool.connections_opened == 2
        nursery.cancel_scope.cancel()


async def test_readinto_stalled_body_times_out() -> None:
    server = ScriptedServer([[_head(len(BODY)) + BODY[:100], 5.0]])
    pool = Pool(httpserver.plain_http_only, max_per_origin=2, read_timeout=0.2)
    try:
        async with trio.open_nursery() as nursery:
            await server.serve(nursery)
            async with await pool.request("GET", f"http://127.0.0.1:{server.port}/s") as resp:
                assert await resp.readinto(bytearray(1000)) == 100
                with pytest.raises(TransportError, match="timed out"):
                    await resp.readinto(bytearray(1000))
            nursery.cancel_scope.cancel()
    finally:
        await pool.aclose()


async def test_readinto_chunked_body_and_reuse() -> None:
    """Chunked bodies take h11's path, pieces bigger than the room are spread over calls, and the
    connection is kept; a Content-Length body on the same connection then reads past h11."""
    parts = [BODY[:10], BODY[10:70_000], BODY[70_000:70_001], BODY[70_001:300_000]]
    wire = _chunked(*parts)
    server = ScriptedServer([[_head(None) + wire[:5000], 0.02, wire[5000:]], [_head(len(BODY)), BODY]])
    async with _pool() as pool, trio.open_nursery() as nursery:
        await server.serve(nursery)
        async with await pool.request("GET", f"http://127.0.0.1:{server.port}/c") as resp:
            data, sizes = await _read_into(resp, 4096)
        assert data == b"".join(parts) and max(sizes) <= 4096
        async with await pool.request("GET", f"http://127.0.0.1:{server.port}/l") as resp:
            assert (await _read_into(resp, 100_000))[0] == BODY
        assert pool.connections_opened == 1 and server.connections == 1
        nursery.cancel_scope.cancel()


async def test_readinto_truncated_chunked_body_fails() -> None:
    wire = _chunked(BODY[:50_000])
    server = ScriptedServer([[_head(None) + wire[:30_000], 0.02, b""]])
    async with _pool() as pool, trio.open_nursery() as nursery:
        await server.serve(nursery)
        async with await pool.request("GET", f"http://127.0.0.1:{server.port}/t") as resp:
            with pytest.raises(TransportError):
                await _read_into(resp, 8192)
        nursery.cancel_scope.cancel()


async def test_readinto_and_iter_chunks_do_not_mix(echo: FakeServer) -> None:
    async with _pool() as pool, await pool.request("GET", f"http://{echo.host}/mix") as resp:
        assert await resp.readinto(bytearray(3)) == 3
        with pytest.raises(RuntimeError):
            async for _ in resp.iter_chunks():
                pass


async def test_readinto_after_an_early_close_is_not_an_empty_body(echo: FakeServer) -> None:
    async with _pool() as pool:
        resp = await pool.request("GET", f"http://{echo.host}/early")
        assert await resp.readinto(bytearray(4)) == 4
        await resp.aclose()
        with pytest.raises(RuntimeError):
            await resp.readinto(bytearray(4))


async def test_a_timeout_on_a_reused_connection_is_not_sent_again() -> None:
    """Only a kept-alive connection the server had closed is replaced by a fresh one for the same
    request; a server that took the request and did not answer in time may have acted on it, so
    the timeout is the request's error (whether to send it again is the retry policy's call)."""
    server = ScriptedServer([[_head(2) + b"ok"], [30.0]])
    pool = Pool(httpserver.plain_http_only, max_per_origin=2, read_timeout=0.3)
    try:
        async with trio.open_nursery() as nursery:
            await server.serve(nursery)
            async with await pool.request("GET", f"http://127.0.0.1:{server.port}/first") as resp:
                assert await resp.read(10) == b"ok"
            with pytest.raises(TransportError, match="timed out"):
                await pool.request("PATCH", f"http://127.0.0.1:{server.port}/second", body=b"chunk")
            assert (server.requests, server.connections) == (2, 1)
            nursery.cancel_scope.cancel()
    finally:
        await pool.aclose()
