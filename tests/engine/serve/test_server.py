"""The socket side: keep-alive, concurrency, bounds, timeouts, chunked streaming, live refresh, shutdown."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.serve import ServeConfig
from gadgetstore.engine.store import Store
from tests.engine.serve.support import AMD64_LAYER, INDEX, REPO, RunningServer, send, start_server
from tests.support.images import make_gadget_image

BIG = 5 * 1024 * 1024 + 123


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


def test_keep_alive_reuses_one_connection(server: RunningServer) -> None:
    conn = server.connection()
    try:
        send(conn, "GET", "/v2/")
        first = conn.sock
        for path in ("/v2/", f"/v2/{REPO}/manifests/latest", f"/v2/{REPO}/blobs/{AMD64_LAYER}", "/v2/x/y/z"):
            send(conn, "HEAD", path)
            send(conn, "GET", path)
            assert conn.sock is first
    finally:
        conn.close()


def test_concurrent_clients(server: RunningServer) -> None:
    def pull(_: int) -> bool:
        conn = server.connection()
        try:
            return all(Digest.of_bytes(send(conn, "GET", f"/v2/{REPO}/blobs/{AMD64_LAYER}").body) == AMD64_LAYER
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


@pytest.mark.parametrize("started", [ServeConfig(max_connections=1)], indirect=True)
def test_connections_are_bounded(started: RunningServer) -> None:
    holder = started.connection()
    send(holder, "GET", "/v2/")  # keeps the only slot (keep-alive)
    with socket.create_connection((started.host, started.port), timeout=0.5) as waiting:
        raw_get(waiting, "/v2/")
        with pytest.raises(TimeoutError):
            waiting.recv(4096)
        holder.close()
        waiting.settimeout(5)
        assert read_response(waiting).startswith(b"HTTP/1.1 200")


def test_malformed_and_oversized_requests(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 400")
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 431")
    assert server.request("GET", f"/v2/{REPO}/manifests/{INDEX}").status == 200


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
