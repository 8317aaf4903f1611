"""The pooled h11 client on its own: keep-alive, bounded pool, size caps; and challenge parsing."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trio

from gadgetstore.engine.registry.auth import parse_challenges
from gadgetstore.engine.registry.errors import TransportError
from gadgetstore.engine.registry.http import RAW_RECEIVE_SIZE, BodyTooLarge, Pool, split_url
from tests.support.fakes import FakeServer, Reply


@pytest.fixture
def echo() -> Iterator[FakeServer]:
    server = FakeServer(lambda req: Reply(200, {"Content-Type": "text/plain"}, req.path.encode() * 100))
    yield server
    server.close()


def _pool(limit: int = 2) -> Pool:
    return Pool(lambda origin: ssl.create_default_context(), max_per_origin=limit, read_timeout=5)


async def test_keep_alive_reuses_connections(echo: FakeServer) -> None:
    pool = _pool()
    try:
        for i in range(5):
            async with await pool.request("GET", f"http://{echo.host}/x{i}") as resp:
                assert await resp.read(10_000) == f"/x{i}".encode() * 100
        assert pool.connections_opened == 1
    finally:
        await pool.aclose()


async def test_pool_bounds_connections(echo: FakeServer) -> None:
    pool = _pool(limit=2)
    try:
        async def get(i: int) -> None:
            async with await pool.request("GET", f"http://{echo.host}/{i}") as resp:
                await resp.read(10_000)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(get, i)
        assert pool.connections_opened <= 2
    finally:
        await pool.aclose()


async def test_body_cap_and_early_close(echo: FakeServer) -> None:
    pool = _pool()
    try:
        resp = await pool.request("GET", f"http://{echo.host}/abcdef")
        with pytest.raises(BodyTooLarge):
            await resp.read(50)
        async with await pool.request("GET", f"http://{echo.host}/ok") as resp:  # the pool is not poisoned
            assert await resp.read(10_000) == b"/ok" * 100
    finally:
        await pool.aclose()


async def test_dead_idle_connection_is_replaced(echo: FakeServer) -> None:
    pool = _pool()
    try:
        async with await pool.request("GET", f"http://{echo.host}/a") as resp:
            await resp.read(10_000)
        (idle,) = next(iter(pool._idle.values()))
        await idle.stream.aclose()  # as if the server had dropped the kept-alive connection
        async with await pool.request("GET", f"http://{echo.host}/b") as resp:
            assert await resp.read(10_000) == b"/b" * 100
        assert pool.connections_opened == 2
    finally:
        await pool.aclose()


async def test_large_body_read_past_h11_keeps_the_connection() -> None:
    """A Content-Length body bigger than one socket read arrives whole; the connection is reused."""
    big = bytes(range(256)) * ((3 * RAW_RECEIVE_SIZE) // 256) + b"tail"
    server = FakeServer(lambda req: Reply(200, {}, big if req.path == "/big" else b"small"))
    pool = _pool()
    try:
        for _ in range(2):
            async with await pool.request("GET", f"http://{server.host}/big") as resp:
                assert await resp.read(len(big)) == big
            async with await pool.request("GET", f"http://{server.host}/small") as resp:
                assert await resp.read(100) == b"small"
        assert pool.connections_opened == 1
    finally:
        await pool.aclose()
        server.close()


async def test_short_body_is_a_transport_error() -> None:
    """A body shorter than its Content-Length (the server then stalls) fails; nothing waits forever."""
    server = FakeServer(lambda req: Reply(200, {"Content-Length": "1000"}, b"only this"))
    pool = Pool(lambda origin: ssl.create_default_context(), max_per_origin=2, read_timeout=0.5)
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
