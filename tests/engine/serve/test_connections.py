"""Which connections stay open: the global bound, the per-client limit, and who is closed for room."""

from __future__ import annotations

import trio
import trio.testing

from gadgetstore.engine.serve.connections import ConnectionTable, client_of

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
