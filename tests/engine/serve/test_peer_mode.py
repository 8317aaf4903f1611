"""Peer mode: blobs by digest from the whole store, and requests that wait for a blob to arrive."""

from __future__ import annotations

import errno
import logging
import threading
import time
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.registry.mirrors_config import Peers, RegistriesConfig
from gadgetstore.engine.serve import ServeConfig
from gadgetstore.engine.serve import app as app_module
from gadgetstore.engine.serve.arrivals import Arrivals
from gadgetstore.engine.serve.messages import Request
from gadgetstore.engine.serve.routes import peer_blob_request
from gadgetstore.engine.store import Store
from tests.engine.serve.support import start_server, wait_for

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


def test_waiting_requests_leave_half_the_connections_free(tmp_path: Path) -> None:
    """max_requests=2: one request may wait; a second one is answered at once."""
    Store.open(tmp_path / "s")
    server = start_server(tmp_path / "s", ServeConfig(peer_blobs=True, max_requests=2))
    try:
        waiter = threading.Thread(target=server.request, args=("GET", f"/v2/r/blobs/{DIGEST}?wait=3"))
        waiter.start()
        wait_for(lambda: server.server.arrivals.waiting == 1)  # the first one waits
        started = time.monotonic()
        assert server.request("GET", f"/v2/r/blobs/{DIGEST}?wait=10").status == 404
        assert time.monotonic() - started < 2  # answered at once, not after its 10 s wait
        waiter.join()
    finally:
        server.stop()


async def test_a_store_that_cannot_be_read_does_not_stop_the_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    store = Store.open(tmp_path / "s")
    real_stat = store.blobs.stat
    stats = 0
    failed_thrice = threading.Event()

    def stat(digest: Digest) -> object:
        """The request's own look succeeds; the poller's next three fail, then stats work again."""
        nonlocal stats
        stats += 1
        if 2 <= stats <= 4:
            if stats == 4:
                failed_thrice.set()
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_stat(digest)

    monkeypatch.setattr(store.blobs, "stat", stat)
    arrivals = Arrivals(store.blobs, interval=0.01)
    sizes: list[int | None] = []
    answered = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(arrivals.run)

        async def wait_for_it() -> None:
            sizes.append(await arrivals.size(DIGEST, 10))
            answered.set()

        nursery.start_soon(wait_for_it)
        assert await trio.to_thread.run_sync(failed_thrice.wait, 30)  # logged, and the poller goes on
        await trio.to_thread.run_sync(store.blobs.put, DATA)
        with trio.fail_after(5):
            await answered.wait()
        nursery.cancel_scope.cancel()
    assert sizes == [len(DATA)]
    assert sum("cannot check the store" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("with_peers", [True, False])
async def test_serve_says_when_peer_mode_is_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture, with_peers: bool) -> None:
    caplog.set_level(logging.INFO, logger="gadgetstore.serve")
    config = RegistriesConfig(source=tmp_path / "registries.toml",
                              peers=Peers(("http://192.0.2.7:5050",)) if with_peers else None)
    monkeypatch.setattr(app_module, "load_registries", lambda: config)
    with trio.CancelScope() as scope:
        await app_module.run(Store.open(tmp_path / "s"), "127.0.0.1:0", on_ready=lambda addresses: scope.cancel())
    lines = [r.getMessage() for r in caplog.records if "peer mode" in r.getMessage()]
    assert len(lines) == (1 if with_peers else 0)
    assert not with_peers or str(tmp_path / "registries.toml") in lines[0]
