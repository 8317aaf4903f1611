"""``gadgetstore serve`` as a process: it reports where it listens and stops cleanly on signals."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.serve.support import REPO, Fixture

GADGETSTORE = [sys.executable, "-m", "gadgetstore.cli.main"]


def start(store_root: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*GADGETSTORE, "--store", str(store_root), "serve", "--listen", "127.0.0.1:0", *args],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/v2/", line)
    if match is None:
        proc.kill()
        pytest.fail(f"serve did not report its address: {line!r}")
    return proc, int(match.group(1))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_until_signal(fixture_store: Fixture, signum: int) -> None:
    proc, port = start(fixture_store.root)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", f"/v2/{REPO}/manifests/latest")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.headers["Docker-Content-Digest"] == str(fixture_store.index)
        resp.read()  # the connection stays open (keep-alive) while the server is told to stop
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
        conn.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert f'"GET /v2/{REPO}/manifests/latest" 200' in log
    assert "Traceback" not in log


def test_bad_listen_address_is_a_usage_error(fixture_store: Fixture) -> None:
    result = subprocess.run([*GADGETSTORE, "--store", str(fixture_store.root), "serve", "--listen", "nowhere"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "is not HOST:PORT" in result.stderr


def test_port_in_use_is_a_one_line_error(fixture_store: Fixture) -> None:
    proc, port = start(fixture_store.root)
    try:
        result = subprocess.run(
            [*GADGETSTORE, "--store", str(fixture_store.root), "serve", "--listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 1
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_second_signal_cuts_a_stuck_download_short(tmp_path: Path) -> None:
    from gadgetstore.engine.store import Store
    from tests.support.images import make_gadget_image

    store = Store.open(tmp_path / "store")
    make_gadget_image(store, "ghcr.io/test/big:1", layer_size=8 * 1024 * 1024, archs=("amd64",))
    sizes = {d: st.st_size for d in store.blobs.iter_digests() if (st := store.blobs.stat(d)) is not None}
    layer = max(sizes, key=sizes.__getitem__)
    proc, port = start(tmp_path / "store")
    try:
        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # never read: the send stalls
            client.connect(("127.0.0.1", port))
            client.sendall(f"GET /v2/test/big/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert client.recv(12) == b"HTTP/1.1 200"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=1.0)  # still inside its shutdown grace, waiting for the download
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
