"""Which connections stay open: the global bound, the per-client limit, and who is closed for room."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import trio
import trio.testing

from gadgetstore.engine.serve import ServeConfig, Server
from gadgetstore.engine.serve.connections import ConnectionTable, client_of
from gadgetstore.engine.store import Store

REMOTE = "192.0.2.7"
OTHER = "192.0.2.8"


async def test_a_full_table_closes_the_longest_idle_connection_for_a_new_one() -> None:
    table = ConnectionTable(max_open=3)
    first, second, third = (table.admit(client) for client in (REMOTE, OTHER, REMOTE))
    assert first and second and third
    table.busy(first)
    scope = table.idle(first)  # idle again after a request: now the most recently idle
    newcomer = table.admit(OTHER)
    assert newcomer is not None and second.evicted and second.scope.cancel_called
    assert not first.evicted and not scope.cancel_called and not third.evicted
    assert table.open == 3 and table.connections_of(OTHER) == 1


async def test_busy_connections_are_never_closed_for_room_and_accepting_waits_for_one() -> None:
    table = ConnectionTable(max_open=2)
    held = [table.admit(REMOTE), table.admit(OTHER)]
    for tracked in held:
        assert tracked is not None
        table.busy(tracked)
    room = False

    async def wait() -> None:
        nonlocal room
        await table.wait_for_room()
        room = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert not room  # both are answering requests: the next connection waits in the listen queue
        assert held[0] is not None
        table.idle(held[0])
        await trio.testing.wait_all_tasks_blocked()
        assert room and not held[0].evicted  # closed only once a new connection needs its place


async def test_a_client_at_its_limit_gives_up_its_own_idle_connection_or_is_refused() -> None:
    table = ConnectionTable(max_open=100, per_client=2)
    first, second = table.admit(REMOTE), table.admit(REMOTE)
    other = table.admit(OTHER)
    assert first and second and other
    third = table.admit(REMOTE)
    assert third is not None
    assert first.evicted and not other.evicted  # its own longest idle, not another client's
    table.busy(second)
    table.busy(third)
    assert table.admit(REMOTE) is None  # nothing of its own idle: refused
    assert table.connections_of(REMOTE) == 2 and table.open == 3


async def test_loopback_clients_are_not_limited_unless_asked() -> None:
    table = ConnectionTable(max_open=100, per_client=1)
    assert all(table.admit(client) is not None for client in ("127.0.0.1", "127.0.0.1", "::1", "::1"))
    assert table.open == 4
    strict = ConnectionTable(max_open=100, per_client=1, limit_loopback=True)
    loopback = strict.admit("127.0.0.1")
    assert loopback is not None
    strict.busy(loopback)
    assert strict.admit("127.0.0.1") is None


async def test_released_connections_free_their_place_once() -> None:
    table = ConnectionTable(max_open=2, per_client=1)
    tracked = table.admit(REMOTE)
    assert tracked is not None
    table.release(tracked)
    table.release(tracked)
    assert table.open == 0 and table.connections_of(REMOTE) == 0 and table.idle_count == 0
    assert table.admit(REMOTE) is not None


def test_an_ipv4_mapped_address_is_its_ipv4_client() -> None:
    assert client_of(("::ffff:192.0.2.7", 5050, 0, 0)) == REMOTE
    assert client_of((REMOTE, 5050)) == REMOTE
    assert client_of(("2001:db8::1", 1, 0, 0)) == "2001:db8::1"



class _Listener:
    """Hands out the connections a test lets in."""

    def __init__(self) -> None:
        self.arrive, self._arrivals = trio.open_memory_channel[object](1)
        self.socket = self

    def getsockname(self) -> tuple[str, int]:
        return "127.0.0.1", 5050

    async def accept(self) -> object:
        return await self._arrivals.receive()

    async def aclose(self) -> None:
        pass


class _Client:
    """A connection whose request heads and answers move when the test says."""

    def __init__(self, host: str) -> None:
        self.socket = self
        self._host = host
        self.send_head, self._heads = trio.open_memory_channel[bytes](1)
        self.answered = trio.Event()
        self.may_answer = trio.Event()
        self.closed = False

    def getpeername(self) -> tuple[str, int]:
        return self._host, 5050

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._heads.receive()

    async def send_all(self, data: bytes) -> None:
        await self.may_answer.wait()
        self.answered.set()

    async def aclose(self) -> None:
        self.closed = True


HEAD = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"


@contextlib.asynccontextmanager
async def _busy_then_arriving(tmp_path: Path) -> AsyncIterator[tuple[Server, _Client, _Client]]:
    """A server for one connection: the first was idle when accepting began (room), then sent a
    request it is answering, then the second arrived. Shut down on leaving."""
    server = Server(Store.open(tmp_path / "s"), ServeConfig(max_connections=1, shutdown_grace=0.0))
    listener = _Listener()
    first, second = _Client(REMOTE), _Client(OTHER)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, [listener])
        await listener.arrive.send(first)
        await trio.testing.wait_all_tasks_blocked()
        assert server.connections.open == 1 and server.connections.idle_count == 1  # room to accept
        await first.send_head.send(HEAD)  # busy: answering
        await trio.testing.wait_all_tasks_blocked()
        await listener.arrive.send(second)
        await trio.testing.wait_all_tasks_blocked()
        try:
            yield server, first, second
        finally:
            server.shutdown()


async def test_room_that_is_gone_once_a_connection_arrives_is_waited_for(tmp_path: Path) -> None:
    """Accepting starts when an idle connection could make room; when that one sends its next
    request before the newcomer arrives, the newcomer waits for room instead of going over the bound."""
    async with _busy_then_arriving(tmp_path) as (server, first, _second):
        assert server.connections.open == 1  # the newcomer is held, not counted over the bound
        first.may_answer.set()  # the first connection answers and is idle again: closed for the newcomer
        await trio.testing.wait_all_tasks_blocked()
        assert first.answered.is_set()
        assert server.connections.open == 1 and server.connections.connections_of(OTHER) == 1
        assert server.connections.connections_of(REMOTE) == 0


async def test_a_connection_held_for_room_is_closed_at_shutdown(tmp_path: Path) -> None:
    async with _busy_then_arriving(tmp_path) as (server, first, second):
        pass
    assert second.closed and first.closed
    assert server.connections.open == 0
