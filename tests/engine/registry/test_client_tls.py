"""A session's TLS contexts: built off the event loop (they read CA files), one per set of trust
settings, and each endpoint's connections verified with its own."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator

import pytest

from gadgetstore.engine.registry import client as client_module
from gadgetstore.engine.registry.client import Session, TransferOptions
from gadgetstore.engine.registry.endpoint import Endpoint
from gadgetstore.engine.registry.errors import TransportError
from tests.support.fakes import FakeServer, Reply, Request


@pytest.fixture
def built_on(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The thread each TLS context of a session was built on."""
    threads: list[threading.Thread] = []
    real = client_module.make_ssl_context

    def recording(*args: object, **kw: object) -> ssl.SSLContext:
        threads.append(threading.current_thread())
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(client_module, "make_ssl_context", recording)
    return threads


@pytest.fixture
def plain_server() -> Iterator[FakeServer]:
    """Speaks plain HTTP, so a TLS handshake with it fails at once."""
    server = FakeServer(lambda _req: Reply(404))
    yield server
    server.close()


async def test_an_insecure_registry_redirecting_to_https_builds_the_context_off_the_event_loop(
        built_on: list[threading.Thread], plain_server: FakeServer) -> None:
    """No secure client was made (the registry is insecure), so the context of the https origin it
    redirects to is built when that connection opens: in a worker thread, never on the loop."""
    def redirect(_req: Request) -> Reply:
        return Reply(307, {"Location": f"https://{plain_server.host}/blob"})

    registry = FakeServer(redirect)
    try:
        options = TransferOptions(insecure_registries=frozenset({registry.host}), retries=0)
        async with Session(options) as session:
            client = await session.client(registry.host)
            with pytest.raises(TransportError):
                await client.request("GET", "/v2/a/blobs/sha256:00", scopes=())
    finally:
        registry.close()
    assert built_on and threading.main_thread() not in built_on



async def test_a_no_verify_context_is_kept_apart_from_every_verifying_one(
        built_on: list[threading.Thread]) -> None:
    """``login --tls-verify=false``: the registry's own context checks neither the certificate nor
    the host name; a mirror on the same origin in that session, and the registry in any other
    session, still verify. Every context is built off the event loop."""
    async with Session(TransferOptions(tls_verify=False)) as session:
        unverified = (await session.client("registry.example")).tls
        mirror = Endpoint("mirror", "https://registry.example", retries=False, namespace="registry.example")
        mirror_tls = (await session.client_at(mirror)).tls
    async with Session(TransferOptions()) as session:
        verified = (await session.client("registry.example")).tls
    assert unverified is not None and mirror_tls is not None and verified is not None
    assert (unverified.verify_mode, unverified.check_hostname) == (ssl.CERT_NONE, False)
    for ctx in (mirror_tls, verified):
        assert (ctx.verify_mode, ctx.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert len(built_on) == 3 and threading.main_thread() not in built_on
