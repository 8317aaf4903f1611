"""Peer mode: blobs by digest from the whole store, and requests that wait for a blob to arrive."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.serve import ServeConfig
from gadgetstore.engine.serve.messages import Request
from gadgetstore.engine.serve.routes import peer_blob_request
from gadgetstore.engine.store import Store
from tests.engine.serve.support import start_server

DATA = b"peer blob " * 5000
DIGEST = Digest.of_bytes(DATA)


def test_peer_blob_request_reads_digest_and_wait() -> None:
    assert peer_blob_request(Request("GET", f"/v2/any/name/blobs/{DIGEST}?ns=ghcr.io&wait=2.5")) == (DIGEST, 2.5)
    assert peer_blob_request(Request("HEAD", f"/v2/x/blobs/{DIGEST}")) == (DIGEST, 0.0)
    assert peer_blob_request(Request("GET", f"/v2/x/blobs/{DIGEST}?wait=1e9")) == (DIGEST, 60.0)
    assert peer_blob_request(Request("GET", f"/v2/x/manifests/{DIGEST}")) is None
    assert peer_blob_request(Request("PUT", f"/v2/x/blobs/{DIGEST}")) is None
    assert peer_blob_request(Request("GET", "/v2/x/blobs/sha256:nothex")) is None


def test_untagged_blob_served_by_digest_only_in_peer_mode(tmp_path: Path) -> None:
    Store.open(tmp_path / "s").blobs.put(DATA)  # present, reachable from no tag
    for peer_mode, status in ((True, 200), (False, 404)):
        server = start_server(tmp_path / "s", ServeConfig(peer_blobs=peer_mode, chunk_size=4096))
        try:
            reply = server.request("GET", f"/v2/some/repo/blobs/{DIGEST}")
            assert reply.status == status
            if peer_mode:
                assert reply.body == DATA and reply.headers["docker-content-digest"] == str(DIGEST)
                ranged = server.request("GET", f"/v2/x/blobs/{DIGEST}", {"Range": "bytes=10-19"})
                assert ranged.status == 206 and ranged.body == DATA[10:20]
        finally:
            server.stop()


def test_a_waiting_request_gets_the_blob_when_it_lands(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    server = start_server(tmp_path / "s", ServeConfig(peer_blobs=True))
    try:
        assert server.request("GET", f"/v2/r/blobs/{DIGEST}?wait=0").status == 404
        started = time.monotonic()
        assert server.request("GET", f"/v2/r/blobs/{DIGEST}?wait=0.3").status == 404  # nobody brings it
        assert 0.25 < time.monotonic() - started < 3
        landing = threading.Timer(0.3, store.blobs.put, (DATA,))
        landing.start()
        started = time.monotonic()
        reply = server.request("GET", f"/v2/r/blobs/{DIGEST}?wait=10")
        assert reply.status == 200 and reply.body == DATA
        assert time.monotonic() - started < 5  # woken when it landed, not at the end of the wait
        landing.join()
    finally:
        server.stop()
