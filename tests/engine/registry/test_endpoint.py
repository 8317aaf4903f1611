"""Endpoints: an upstream, a mirror and a peer differ only in their values, and a session's client
of each follows them (URLs, credentials, retries, grace)."""

from __future__ import annotations

import contextlib

import pytest
import trio

from gadgetstore.engine.registry.authfile import Credentials
from gadgetstore.engine.registry.client import Session, TransferOptions
from gadgetstore.engine.registry.endpoint import Endpoint
from gadgetstore.engine.registry.errors import TransportError
from gadgetstore.engine.registry.mirrors_config import Mirror
from gadgetstore.engine.registry.stall import StallPolicy
from tests.support.stalling import SlowServer

PATH = "/v2/inspektor-gadget/gadget/trace_open/manifests/v1"


def test_an_upstream_is_the_registry_itself() -> None:
    hub = Endpoint.upstream("docker.io", insecure=False, plain_http=False)
    assert (hub.label, hub.base_url, hub.registry) == ("docker.io", "https://registry-1.docker.io", "docker.io")
    assert hub.url(PATH) == "https://registry-1.docker.io" + PATH
    assert hub.retries and not hub.is_mirror and hub.target(PATH)[1] == 0.0
    insecure = Endpoint.upstream("reg:5000", insecure=True, plain_http=False)
    plain = Endpoint.upstream("reg:5000", insecure=False, plain_http=True)
    assert insecure.base_url == plain.base_url == "http://reg:5000"
    assert insecure.insecure and not plain.insecure  # --plain-http keeps the token dance


def test_a_mirror_asks_under_its_prefix_for_the_upstream_it_stands_in_for() -> None:
    mirror = Endpoint.mirror(Mirror("https://cache:5000", path_prefix="ghcr.io"), "ghcr.io")
    assert mirror.url(PATH) == "https://cache:5000/v2/ghcr.io/inspektor-gadget/gadget/trace_open/manifests/v1?ns=ghcr.io"
    assert mirror.url("/v2/a/tags/list?n=10") == "https://cache:5000/v2/ghcr.io/a/tags/list?n=10&ns=ghcr.io"
    assert mirror.url("/v2/") == "https://cache:5000/v2/?ns=ghcr.io"
    assert (mirror.label, mirror.registry, mirror.retries, mirror.is_mirror) == (
        "https://cache:5000/ghcr.io", None, False, True)


def test_a_peer_is_asked_to_wait_as_long_as_it_is_told_at_each_request() -> None:
    wait = [15.0]
    peer = Endpoint.peer("http://10.0.0.7:5050", "registry.example:5000", lambda: wait[0])
    blob = "/v2/a/blobs/sha256:00"
    assert peer.target(blob) == ("http://10.0.0.7:5050/v2/a/blobs/sha256:00?ns=registry.example%3A5000&wait=15", 15.0)
    wait[0] = 0.0
    url, grace = peer.target(blob)
    assert url.endswith("&wait=0") and grace == 0.0
    assert peer.insecure and peer.registry is None and not peer.retries and peer.is_mirror


async def test_a_sessions_clients_follow_their_endpoints() -> None:
    secret = Credentials("alice", "s3cret")
    options = TransferOptions(credentials={"reg.example": secret}, plain_http=frozenset({"reg.example"}), retries=3)
    async with Session(options) as session:
        upstream = await session.client("reg.example")
        assert upstream is await session.client("reg.example")
        assert upstream.credentials == secret and upstream.retry.retries == 3
        mirror = Endpoint.mirror(Mirror("http://10.0.0.9:5000", insecure=True), "reg.example")
        client = await session.client_at(mirror)
        assert client is await session.client_at(Endpoint.mirror(Mirror("http://10.0.0.9:5000", insecure=True),
                                                                 "reg.example"))
        assert client.credentials is None and client.retry.retries == 0
        assert client.domain == "http://10.0.0.9:5000" and client.auth.stored_only
        assert client.url("/v2/a/blobs/sha256:00") == "http://10.0.0.9:5000/v2/a/blobs/sha256:00?ns=reg.example"


async def test_a_peer_request_gets_the_stall_grace_of_the_wait_its_url_asks_for() -> None:
    """The peer's wait is read once per request: the URL's ``wait=`` and the stall check's grace are
    one value, though the batch changes its mind meanwhile (here: at once, as it does when another
    request finds the peer empty), so a peer holding the request as asked is not taken for stalled."""
    waits = iter([0.5, 0.0, 0.0])
    with contextlib.closing(SlowServer("silent")) as server:
        peer = Endpoint.peer(f"http://{server.host}", "registry.example", lambda: next(waits))
        async with Session(TransferOptions(stall=StallPolicy(1024.0, 0.2))) as session:
            client = await session.client_at(peer)
            began = trio.current_time()
            with trio.fail_after(3), pytest.raises(TransportError, match="stalled"):
                await client.request("GET", "/v2/a/blobs/sha256:00", scopes=())
            assert trio.current_time() - began >= 0.5 + 0.2  # the grace the URL's wait=0.5 earns, then the window
