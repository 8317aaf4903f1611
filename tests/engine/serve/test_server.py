"""The socket side: keep-alive, concurrency, bounds, timeouts, chunked streaming, live refresh, shutdown."""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.serve import ServeConfig, Server
from gadgetstore.engine.serve.messages import BlobSlice
from gadgetstore.engine.store import Store
from tests.engine.serve.support import REPO, Fixture, RunningServer, send, start_server, wait_for
from tests.support.images import make_gadget_image

BIG = 5 * 1024 * 1024 + 123
PEER_DATA = b"awaited blob " * 1000
PEER_DIGEST = Digest.of_bytes(PEER_DATA)


@pytest.fixture
def big_store(tmp_path: Path) -> tuple[Path, Digest]:
    store = Store.open(tmp_path / "big")
    make_gadget_image(store, "ghcr.io/test/big:1", layer_size=BIG, archs=("amd64",))
    layer = next(d for d in store.blobs.iter_digests() if (st := store.blobs.stat(d)) and st.st_size == BIG)
    return tmp_path / "big", layer


@pytest.fixture
def started(request: pytest.FixtureRequest, big_store: tuple[Path, Digest]) -> Iterator[RunningServer]:
    config = getattr(request, "param", None) or ServeConfig(refresh_interval=0.0, chunk_size=64 * 1024)
    running = start_server(big_store[0], config)
    try:
        yield running
    finally:
        running.stop()


def raw_get(sock: socket.socket, path: str) -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body, however the bytes were split into segments."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"connection closed mid-response: {data!r}"
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest


def is_open(sock: socket.socket) -> bool:
    """Whether the server still holds the connection (nothing to read, no end of stream), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        sock.setblocking(True)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection (within 5 s) without sending anything."""
    sock.settimeout(5)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def connect(server: RunningServer) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=5)


def blob_path(root: Path, digest: Digest) -> Path:
    return root / "blobs" / digest.algorithm / digest.hex


def access_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, int, str]]:
    """(request line, status, body bytes, rest) of each access log line so far."""
    found = (re.fullmatch(r'\S+ "(.*)" (\S+) (\d+)(.*)', r.getMessage()) for r in caplog.records)
    return [(m[1], m[2], int(m[3]), m[4]) for m in found if m]


def test_keep_alive_reuses_one_connection(server: RunningServer, fixture_store: Fixture) -> None:
    conn = server.connection()
    try:
        send(conn, "GET", "/v2/")
        first = conn.sock
        layer = f"/v2/{REPO}/blobs/{fixture_store.amd64_layer}"
        for path in ("/v2/", f"/v2/{REPO}/manifests/latest", layer, "/v2/x/y/z"):
            send(conn, "HEAD", path)
            send(conn, "GET", path)
            assert conn.sock is first
    finally:
        conn.close()


def test_concurrent_clients(server: RunningServer, fixture_store: Fixture) -> None:
    layer = fixture_store.amd64_layer

    def pull(_: int) -> bool:
        conn = server.connection()
        try:
            return all(Digest.of_bytes(send(conn, "GET", f"/v2/{REPO}/blobs/{layer}").body) == layer
                       for _ in range(5))
        finally:
            conn.close()

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(pull, range(32)))


def test_large_blob_is_streamed_in_chunks(started: RunningServer, big_store: tuple[Path, Digest]) -> None:
    layer = big_store[1]
    reply = started.request("GET", f"/v2/test/big/blobs/{layer}")
    assert reply.status == 200 and len(reply.body) == BIG and Digest.of_bytes(reply.body) == layer
    start = 64 * 1024 - 10
    part = started.request("GET", f"/v2/test/big/blobs/{layer}", {"Range": f"bytes={start}-{start + 3 * 64 * 1024}"})
    assert part.status == 206 and part.body == reply.body[start:start + 3 * 64 * 1024 + 1]


def test_new_tags_are_served_without_restart(started: RunningServer, big_store: tuple[Path, Digest]) -> None:
    assert started.request("GET", "/v2/test/big/manifests/2").status == 404
    store = Store.open(big_store[0])
    with store.transaction() as txn:
        txn.tag("ghcr.io/test/big:2", store.resolve("ghcr.io/test/big:1"))
    assert started.request("GET", "/v2/test/big/manifests/2").status == 200
    assert started.request("GET", "/v2/test/big/tags/list").json()["tags"] == ["1", "2"]


@pytest.mark.leaves_damaged_store
def test_missing_or_damaged_blob_is_unknown(started: RunningServer, big_store: tuple[Path, Digest]) -> None:
    root, layer = big_store
    path = root / "blobs" / layer.algorithm / layer.hex
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.truncate(100)
    reply = started.request("GET", f"/v2/test/big/blobs/{layer}")
    assert reply.status == 404 and reply.error_codes == ["BLOB_UNKNOWN"]
    os.unlink(path)
    assert started.request("HEAD", f"/v2/test/big/blobs/{layer}").status == 404
    assert started.request("GET", "/v2/test/big/manifests/1").status == 200


@pytest.mark.parametrize("started", [ServeConfig(idle_timeout=0.3)], indirect=True)
def test_idle_connections_are_closed(started: RunningServer) -> None:
    with socket.create_connection((started.host, started.port), timeout=5) as sock:
        raw_get(sock, "/v2/")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        assert sock.recv(4096) == b""  # closed by the server after idle_timeout


def test_malformed_and_oversized_requests(server: RunningServer, fixture_store: Fixture) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 400")
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 431")
    assert server.request("GET", f"/v2/{REPO}/manifests/{fixture_store.index}").status == 200


def test_shutdown_closes_idle_connections_promptly(big_store: tuple[Path, Digest]) -> None:
    running = start_server(big_store[0], ServeConfig(shutdown_grace=10.0))
    conn = running.connection()
    send(conn, "GET", "/v2/")
    started = time.monotonic()
    running.stop()
    assert time.monotonic() - started < 2.0
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((running.host, running.port), timeout=2).close()


HALF_A_HEAD = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nUser-Agent: slo"


@pytest.mark.parametrize("opening", [b"", HALF_A_HEAD], ids=["silent", "half-head"])
def test_idle_and_slow_clients_do_not_hold_up_a_request(big_store: tuple[Path, Digest], opening: bytes) -> None:
    """200 connections that send nothing (or half a head): a request is answered while all stay open."""
    root, layer = big_store
    running = start_server(root, ServeConfig(refresh_interval=0.0, header_timeout=60.0))
    idle: list[socket.socket] = []
    try:
        for _ in range(200):
            idle.append(connect(running))
            idle[-1].sendall(opening)
        wait_for(lambda: running.server.connections.open == 200)
        conn = running.connection()
        try:
            assert send(conn, "GET", "/v2/").status == 200
            reply = send(conn, "GET", f"/v2/test/big/blobs/{layer}")
            assert reply.status == 200 and Digest.of_bytes(reply.body) == layer
        finally:
            conn.close()
        assert all(is_open(sock) for sock in idle)  # none had to time out or be closed first
    finally:
        for sock in idle:
            sock.close()
        running.stop()


@pytest.mark.parametrize("started", [ServeConfig(max_connections=3)], indirect=True)
def test_a_new_connection_closes_the_longest_idle_one_when_all_are_taken(started: RunningServer) -> None:
    idle = [connect(started) for _ in range(3)]
    try:
        wait_for(lambda: started.server.connections.open == 3)
        assert started.request("GET", "/v2/").status == 200
        assert closed_by_server(idle[0])
        assert is_open(idle[1]) and is_open(idle[2])
    finally:
        for sock in idle:
            sock.close()


def test_requests_wait_for_a_request_slot(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    running = start_server(tmp_path / "s", ServeConfig(peer_blobs=True, max_requests=1))
    try:
        with connect(running) as waiting, connect(running) as queued:
            raw_get(waiting, f"/v2/r/blobs/{PEER_DIGEST}?wait=30")
            wait_for(lambda: running.server.arrivals.waiting == 1)
            raw_get(queued, "/v2/")
            queued.settimeout(0.5)
            with pytest.raises(TimeoutError):
                queued.recv(4096)  # the only request slot is taken
            store.blobs.put(PEER_DATA)
            assert read_response(waiting).startswith(b"HTTP/1.1 200")
            queued.settimeout(5)
            assert read_response(queued).startswith(b"HTTP/1.1 200")
    finally:
        running.stop()


def test_a_client_past_its_connection_limit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Its own longest-idle connection makes room; with none idle, the new connection is closed."""
    store = Store.open(tmp_path / "s")
    config = ServeConfig(peer_blobs=True, max_client_connections=2, limit_loopback=True)
    running = start_server(tmp_path / "s", config)
    try:
        with connect(running) as first, connect(running) as second:
            wait_for(lambda: running.server.connections.open == 2)
            with connect(running) as third:
                assert closed_by_server(first)
                for sock in (second, third):
                    raw_get(sock, f"/v2/r/blobs/{PEER_DIGEST}?wait=30")
                wait_for(lambda: running.server.arrivals.waiting == 2)
                with connect(running) as refused:
                    assert closed_by_server(refused)
                store.blobs.put(PEER_DATA)
                assert read_response(second).startswith(b"HTTP/1.1 200")
                assert read_response(third).startswith(b"HTTP/1.1 200")
    finally:
        running.stop()
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refusing connections")]
    assert refusals == ["refusing connections from 127.0.0.1: it has 2 open, none idle (--max-client-connections)"]


@pytest.mark.parametrize("started", [ServeConfig(header_timeout=0.5, idle_timeout=30.0)], indirect=True)
def test_a_head_must_arrive_within_the_header_timeout(started: RunningServer) -> None:
    with connect(started) as silent:
        assert closed_by_server(silent)
    head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 400 + b"\r\n\r\n"
    with connect(started) as slow:
        sent = 0
        while sent < len(head) and is_open(slow):  # a byte every 20 ms: each one well within the timeout
            slow.sendall(head[sent:sent + 1])
            sent += 1
            time.sleep(0.02)
        assert sent < len(head)  # closed for the whole head's deadline, not kept alive by each byte
    with connect(started) as kept_alive:
        raw_get(kept_alive, "/v2/")
        assert read_response(kept_alive).startswith(b"HTTP/1.1 200")
        kept_alive.settimeout(1.5)
        with pytest.raises(TimeoutError):
            kept_alive.recv(1)  # between requests, idle_timeout applies, not header_timeout
        raw_get(kept_alive, "/v2/")
        assert read_response(kept_alive).startswith(b"HTTP/1.1 200")


@pytest.mark.leaves_damaged_store
def test_the_access_log_shows_the_status_sent(
    started: RunningServer, big_store: tuple[Path, Digest], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gadgetstore.serve")
    root, layer = big_store
    path = f"/v2/test/big/blobs/{layer}"
    conn = started.connection()
    try:
        assert send(conn, "GET", path, {"Range": "bytes=0-99"}).status == 206
        unsatisfiable = send(conn, "GET", path, {"Range": f"bytes={BIG}-"})
        assert unsatisfiable.status == 416
        assert send(conn, "HEAD", path).status == 200
        os.unlink(blob_path(root, layer))  # gone from the store after the catalog listed it
        missing = send(conn, "GET", path)
        assert missing.status == 404 and missing.error_codes == ["BLOB_UNKNOWN"]
        assert send(conn, "HEAD", path).status == 404
        send(conn, "GET", "/v2/")  # its answer comes after the log lines of the requests before it
    finally:
        conn.close()
    assert access_lines(caplog)[:5] == [
        (f"GET {path}", "206", 100, ""),
        (f"GET {path}", "416", len(unsatisfiable.body), ""),
        (f"HEAD {path}", "200", 0, ""),
        (f"GET {path}", "404", len(missing.body), ""),
        (f"HEAD {path}", "404", 0, ""),
    ]


@pytest.mark.leaves_damaged_store
def test_a_body_cut_short_is_logged_as_cut_short(
    started: RunningServer, big_store: tuple[Path, Digest], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="gadgetstore.serve")
    root, layer = big_store
    half = BIG // 2
    real_open_blob = Server.open_blob

    def open_then_shrink(self: Server, blob: BlobSlice) -> object:
        """The file shrinks after its size was checked, as if something rewrote it in place."""
        f = real_open_blob(self, blob)
        os.chmod(blob_path(root, layer), 0o644)
        os.truncate(blob_path(root, layer), half)
        return f

    monkeypatch.setattr(Server, "open_blob", open_then_shrink)
    with connect(started) as sock:
        raw_get(sock, f"/v2/test/big/blobs/{layer}")
        received = b""
        while more := sock.recv(65536):
            received += more
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) == half
    assert access_lines(caplog) == [(f"GET /v2/test/big/blobs/{layer}", "200", half, f" (cut short of {BIG})")]
    assert any("ended early on disk" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
