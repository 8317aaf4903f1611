"""Stalled transfers: the rate meter on explicit timestamps, then real sockets held by slow servers.

An idle timeout per read is restarted by every byte, so it never ends a trickle. The socket tests
use a window of a fraction of a second and bound themselves with ``fail_after``: a client that
only has an idle timeout fails them instead of hanging.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.registry.client import Session, TransferOptions
from gadgetstore.engine.registry.errors import TransportError
from gadgetstore.engine.registry.http import Pool
from gadgetstore.engine.registry.mirrors_config import parse
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.registry.stall import BUCKETS, RateMeter, StallPolicy
from gadgetstore.engine.store import Store
from tests.support import httpserver
from tests.support.stalling import SlowServer

FLOOR = 1024.0
WINDOW = 30.0
POLICY = StallPolicy(FLOOR, WINDOW)
SHORT = StallPolicy(FLOOR, 0.3)  # for real sockets


# -- the meter, on explicit timestamps ----------------------------------------------------------


def test_silence_is_a_stall_after_one_window() -> None:
    meter = RateMeter(POLICY, start=100.0)
    assert meter.deadline() == 130.0
    assert not meter.stalled(129.99)
    assert meter.stalled(130.0)


def test_one_byte_a_second_is_a_stall_although_bytes_keep_coming() -> None:
    meter = RateMeter(POLICY, start=0.0)
    for second in range(1, 30):
        meter.add(float(second), 1)
        assert not meter.stalled(float(second))
    meter.add(30.0, 1)
    assert meter.stalled(30.0)


def test_a_fast_transfer_is_judged_by_its_recent_bytes() -> None:
    meter = RateMeter(POLICY, start=0.0)
    meter.add(1.0, 10 * 1024 * 1024)  # a burst, then nothing
    width = WINDOW / BUCKETS
    assert meter.deadline() == pytest.approx(math.ceil(1.0 / width) * width + WINDOW)  # the burst's bucket leaves
    assert not meter.stalled(31.0)
    assert meter.stalled(33.0)


def test_a_steady_rate_above_the_floor_never_stalls_and_the_meter_stays_small() -> None:
    meter = RateMeter(POLICY, start=0.0)
    for tick in range(1, 1000):
        now = tick * 0.5
        meter.add(now, 700)  # 1400 B/s
        assert not meter.stalled(now)
    assert meter.buckets <= BUCKETS + 1
    assert meter.total == 999 * 700
    # It dries up: stalled once the window holds fewer than floor × window bytes.
    assert meter.stalled(499.5 + WINDOW)
    assert not meter.stalled(499.5 + 8.0)


def test_a_rate_just_below_the_floor_stalls() -> None:
    meter = RateMeter(POLICY, start=0.0)
    now = 0.0
    while now < 2 * WINDOW and not meter.stalled(now):
        now += 0.25
        meter.add(now, int(FLOOR * 0.9 / 4))
    assert WINDOW <= now <= WINDOW + WINDOW / BUCKETS


def test_a_reader_that_was_busy_gets_one_bucket_to_find_waiting_bytes() -> None:
    width = WINDOW / BUCKETS
    meter = RateMeter(POLICY, start=0.0)
    assert meter.wait_deadline(0.0) == WINDOW  # waiting on the server from the start
    meter.add(1.0, 1 << 20)
    deadline = meter.deadline()
    busy_until = deadline + 20.0  # the client did not read (a slow disk): the window emptied meanwhile
    assert meter.stalled(busy_until)
    assert meter.wait_deadline(busy_until) == busy_until + width
    meter.add(busy_until + 0.001, 1 << 20)  # the bytes were there
    assert not meter.stalled(busy_until + 1.0)


def test_a_trickle_gets_no_second_chance() -> None:
    meter = RateMeter(POLICY, start=0.0)
    now = WINDOW + 0.005  # the deadline passed between two reads
    assert meter.wait_deadline(now) == now + WINDOW / BUCKETS
    meter.add(now + 0.01, 1)  # one more byte
    assert meter.wait_deadline(now + 0.02) == WINDOW  # already past: the next wait ends at once


def test_grace_delays_the_first_judgement_only() -> None:
    meter = RateMeter(POLICY, start=0.0, grace=15.0)
    assert meter.deadline() == 45.0
    meter.add(40.0, 64 * 1024)
    assert not meter.stalled(60.0)
    assert meter.stalled(72.0)


def test_a_zero_floor_never_stalls() -> None:
    meter = RateMeter(StallPolicy(0, WINDOW), start=0.0)
    assert meter.deadline() == math.inf and not meter.stalled(1e9)
    assert not StallPolicy(0, WINDOW).enabled


def test_policy_describes_itself_for_the_error_message() -> None:
    assert POLICY.describe() == "under 1 KiB/s for 30s"


def test_registries_config_sets_the_policy_of_every_session() -> None:
    config = parse('[transfer]\nstall_floor = "10kB/s"\nstall_window = "1m"\n')
    assert config.stall == StallPolicy(10_000, 60)
    assert Session(TransferOptions(registries=config)).pool.stall == StallPolicy(10_000, 60)
    explicit = TransferOptions(registries=config, stall=SHORT)  # an explicit policy wins
    assert Session(explicit).pool.stall == SHORT
    assert Session(TransferOptions()).pool.stall == StallPolicy()


# -- real sockets --------------------------------------------------------------------------------


@contextlib.contextmanager
def _slow(mode: str, body_size: int = 1 << 20, piece: int = 1, interval: float = 0.02) -> Iterator[SlowServer]:
    server = SlowServer(mode, body_size, piece, interval)
    try:
        yield server
    finally:
        server.close()


@contextlib.asynccontextmanager
async def _pool(stall: StallPolicy = SHORT) -> AsyncIterator[Pool]:
    pool = Pool(httpserver.plain_http_only, read_timeout=10, stall=stall)
    try:
        yield pool
    finally:
        await pool.aclose()


async def test_a_server_that_never_answers_is_a_stall_after_the_window() -> None:
    with _slow("silent") as server:
        async with _pool() as pool:
            began = trio.current_time()
            with trio.fail_after(3), pytest.raises(TransportError, match="stalled while waiting for the answer "
                                                                         r"to GET /v2/ \(under 1 KiB/s for 0.3s\)"):
                await pool.request("GET", f"http://{server.host}/v2/")
            assert trio.current_time() - began >= SHORT.window
            assert server.arrived.is_set()


async def test_a_trickling_body_is_a_stall_although_every_read_gets_a_byte() -> None:
    with _slow("trickle", piece=1, interval=0.01) as server:  # ~100 B/s, far under the floor
        async with _pool() as pool:
            resp = await pool.request("GET", f"http://{server.host}/v2/x/blobs/sha256:00")
            async with resp:
                with trio.fail_after(3), pytest.raises(TransportError, match="stalled while reading a response body"):
                    await resp.read(1 << 20)
            assert 0 < server.sent < 1 << 20


async def test_an_upload_the_server_stops_reading_is_a_stall() -> None:
    """The body outgrows the socket buffers, so the send itself waits: bounded like a read."""
    with _slow("silent") as server:
        async with _pool() as pool:
            with trio.fail_after(3), pytest.raises(TransportError, match="stalled while waiting for the answer "
                                                                         "to PATCH /v2/x/blobs/uploads/1"):
                await pool.request("PATCH", f"http://{server.host}/v2/x/blobs/uploads/1", body=b"x" * (64 << 20))


async def test_a_slow_transfer_above_the_floor_is_not_a_stall() -> None:
    # 4 KiB every 20 ms (~200 KiB/s) for about two windows: longer than a window, never under the floor
    with _slow("trickle", body_size=128 * 1024, piece=4096, interval=0.02) as server:
        async with _pool() as pool:
            with trio.fail_after(5):
                resp = await pool.request("GET", f"http://{server.host}/blob")
                async with resp:
                    assert len(await resp.read(1 << 20)) == 128 * 1024


async def test_a_client_busy_for_longer_than_the_window_is_not_a_stall() -> None:
    """The server sent its bytes; the client stopped reading for a while (a slow disk, say)."""
    with _slow("trickle", body_size=256 * 1024, piece=64 * 1024, interval=0.001) as server:
        async with _pool() as pool:
            resp = await pool.request("GET", f"http://{server.host}/blob")
            buf = bytearray(1024)
            async with resp:
                got = await resp.readinto(buf)
                await trio.sleep(2 * SHORT.window)  # the client is busy, not waiting on the server
                while n := await resp.readinto(buf):
                    got += n
            assert got == 256 * 1024


async def test_head_grace_lets_a_peer_hold_the_request() -> None:
    with _slow("silent") as server:
        async with _pool(StallPolicy(FLOOR, 0.2)) as pool:
            began = trio.current_time()
            with trio.fail_after(3), pytest.raises(TransportError, match="stalled"):
                await pool.request("GET", f"http://{server.host}/v2/", head_grace=0.5)
            assert trio.current_time() - began >= 0.7


@pytest.mark.parametrize(("mode", "while_"), [("silent", "waiting for the answer to GET /v2/demo/manifests/v1"),
                                              ("trickle", "reading a response body")])
async def test_a_stalled_pull_is_retried_then_gives_up(tmp_path: Path, mode: str, while_: str) -> None:
    """Each attempt is a stall after the window, retried as a connection error (a manifest's body too)."""
    with _slow(mode) as server:
        options = TransferOptions(insecure_registries=frozenset({server.host}), stall=StallPolicy(FLOOR, 0.2),
                                  retries=1, backoff_base=0.01)
        with trio.fail_after(3), pytest.raises(TransportError) as info:
            await pull_image(Store.open(tmp_path / "store"), f"{server.host}/demo:v1", options)
        assert str(info.value) == f"http://{server.host}: stalled while {while_} (under 1 KiB/s for 0.2s)"
        assert server.requests == 2  # the first attempt and one retry
