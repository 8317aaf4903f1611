"""Basic over TLS, bearer tokens, and keeping credentials at home."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.registry import auth as authlib
from gadgetstore.engine.registry.authfile import Credentials, store_credentials
from gadgetstore.engine.registry.client import Session, TransferOptions
from gadgetstore.engine.registry.errors import (
    AuthError,
    NotFoundInRegistry,
    RateLimited,
    RegistryUnavailable,
    TransportError,
)
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.fakes import FakeServer, Reply, Request
from tests.support.images import graph_digests, make_gadget_image, verify_store
from tests.support.registry import TEST_PASSWORD, TEST_USER, RegistryServer, TokenServer, unique_repo

# -- htpasswd over TLS --------------------------------------------------------------------------


async def test_basic_auth_over_tls_roundtrip(htpasswd_registry: RegistryServer, tmp_path: Path) -> None:
    assert htpasswd_registry.ca is not None
    authfile = tmp_path / "auth.json"
    store_credentials(authfile, htpasswd_registry.host, TEST_USER, TEST_PASSWORD)
    opts = TransferOptions(authfile=authfile, ca_file=htpasswd_registry.ca.ca_cert)
    src = Store.open(tmp_path / "src")
    image = htpasswd_registry.ref(unique_repo(), "v1")
    root = make_gadget_image(src, image)
    await push_image(src, image, opts)
    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, opts)
    assert result.descriptor is not None and result.descriptor.digest == root.digest
    assert graph_digests(dst, image) == graph_digests(src, image)


async def test_basic_auth_without_credentials(htpasswd_registry: RegistryServer, tmp_path: Path) -> None:
    assert htpasswd_registry.ca is not None
    opts = TransferOptions(ca_file=htpasswd_registry.ca.ca_cert)
    with pytest.raises(AuthError, match="authentication required"):
        await pull_image(Store.open(tmp_path / "s"), htpasswd_registry.ref("x/y"), opts)


async def test_basic_auth_wrong_password(htpasswd_registry: RegistryServer, tmp_path: Path) -> None:
    assert htpasswd_registry.ca is not None
    opts = TransferOptions(ca_file=htpasswd_registry.ca.ca_cert,
                           credentials={htpasswd_registry.host: Credentials(TEST_USER, "wrong")})
    with pytest.raises(AuthError, match="invalid username or password"):
        await pull_image(Store.open(tmp_path / "s"), htpasswd_registry.ref("x/y"), opts)


async def test_untrusted_certificate(htpasswd_registry: RegistryServer, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="certificate"):
        await pull_image(Store.open(tmp_path / "s"), htpasswd_registry.ref("x/y"), TransferOptions(retries=0))


# -- bearer tokens ------------------------------------------------------------------------------




async def _publish(server: RegistryServer, tmp_path: Path) -> tuple[str, Store]:
    src = Store.open(tmp_path / "src")
    image = server.ref(unique_repo(), "v1")
    make_gadget_image(src, image)
    await push_image(src, image, _plain(server, True))
    return image, src


def _plain(server: RegistryServer, with_creds: bool) -> TransferOptions:
    """The test token registry serves plain http: reach it as ``--plain-http`` does, credentials kept."""
    creds = {server.host: Credentials(TEST_USER, TEST_PASSWORD)} if with_creds else {}
    return TransferOptions(plain_http=frozenset({server.host}), credentials=creds, backoff_base=0.01)


@pytest.fixture
def plain(token_registry: RegistryServer) -> RegistryServer:
    return token_registry


async def test_token_push_and_anonymous_pull(plain: RegistryServer, token_server: TokenServer, tmp_path: Path) -> None:
    image, src = await _publish(plain, tmp_path)
    assert any(r["authorization"] for r in token_server.requests)
    token_server.requests.clear()
    dst = Store.open(tmp_path / "dst")
    await pull_image(dst, image, _plain(plain, False))
    assert token_server.requests and all(r["authorization"] is None for r in token_server.requests)
    assert len(token_server.requests) == 1  # concurrent 401s share one token request
    assert graph_digests(dst, image) == graph_digests(src, image)


async def test_anonymous_push_is_refused(plain: RegistryServer, token_server: TokenServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    image = plain.ref(unique_repo(), "v1")
    make_gadget_image(src, image)
    with pytest.raises(AuthError, match="401"):
        await push_image(src, image, _plain(plain, False))


async def test_expired_token_is_refreshed(plain: RegistryServer, token_server: TokenServer, tmp_path: Path) -> None:
    image, src = await _publish(plain, tmp_path)
    token_server.requests.clear()
    token_server.expired_tokens = 1  # the registry answers 401 invalid_token to the first one
    dst = Store.open(tmp_path / "dst")
    await pull_image(dst, image, _plain(plain, True))
    assert len(token_server.requests) == 2
    assert graph_digests(dst, image) == graph_digests(src, image)
    verify_store(tmp_path / "dst")


def test_token_lifetime_and_staleness() -> None:
    now = 1_000_000.0
    token = authlib.parse_token_response(b'{"access_token":"a","expires_in":300,"issued_at":"1970-01-12T13:46:40Z"}',
                                         now + 100, "t")
    assert token.value == "a" and token.lifetime == pytest.approx(200)
    cache = authlib.TokenCache()
    cache.put(("s",), token, 0.0)
    assert cache.get(("s",), 190.0) == "a"
    assert cache.get(("s",), 196.0) is None  # stale a little before it expires
    default = authlib.parse_token_response(b'{"token":"b"}', now, "t")
    assert default.lifetime == authlib.DEFAULT_TOKEN_LIFETIME
    cache.put(("s",), authlib.parse_token_response(b'{"token":"c","issued_at":"1970-01-01T00:00:00Z"}', now, "t"), 0)
    assert cache.get(("s",), 1.0) == "c"  # stale on arrival still serves the retry it was fetched for
    assert cache.get(("s",), 6.0) is None
    with pytest.raises(AuthError, match="no token"):
        authlib.parse_token_response(b'{"expires_in":3}', now, "t")


async def test_wrong_password_for_token(plain: RegistryServer, token_server: TokenServer, tmp_path: Path) -> None:
    opts = _plain(plain, False)
    opts.credentials = {plain.host: Credentials(TEST_USER, "nope")}
    with pytest.raises(AuthError, match="invalid username or password"):
        await pull_image(Store.open(tmp_path / "dst"), plain.ref("a/b"), opts)


# -- hostile registries (scripted fakes) ---------------------------------------------------------


def _challenge_app(realm: str, blob_redirect: str | None = None) -> FakeServer:
    def handler(req: Request) -> Reply:
        if req.path.startswith("/token"):
            return Reply(200, {"Content-Type": "application/json"}, json.dumps({"token": "t0k"}).encode())
        if "authorization" not in req.headers:
            return Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="svc",scope="repository:a/b:pull"'})
        return Reply(404, {"Content-Type": "application/json"},
                     b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')

    return FakeServer(handler)


@pytest.fixture
def fake_servers() -> Iterator[list[FakeServer]]:
    servers: list[FakeServer] = []
    yield servers
    for server in servers:
        server.close()


@pytest.mark.parametrize("realm", ["http://169.254.169.254/latest/meta-data", "file:///etc/passwd", "gopher://x/"])
async def test_hostile_realm_refused(realm: str, fake_servers: list[FakeServer], tmp_path: Path) -> None:
    app = _challenge_app(realm)
    fake_servers.append(app)
    opts = TransferOptions(plain_http=frozenset({app.host}), credentials={app.host: Credentials("u", "p")}, retries=0)
    with pytest.raises(AuthError, match="refusing token realm"):
        await pull_image(Store.open(tmp_path / "s"), f"{app.host}/a/b:v1", opts)


def test_realm_rules() -> None:
    with pytest.raises(AuthError, match="plain http"):
        authlib.check_realm("http://auth.example.com/token", "https", "registry.example.com")
    with pytest.raises(AuthError, match="internal"):
        authlib.check_realm("https://10.0.0.1/token", "https", "registry.example.com")
    authlib.check_realm("http://127.0.0.1:5001/token", "http", "127.0.0.1")
    authlib.check_realm("https://auth.example.com/token", "https", "registry.example.com")
    assert not authlib.may_send_credentials("https://evil.example/t", "registry.example.com", frozenset())
    assert authlib.may_send_credentials("https://auth.docker.io/t", "registry-1.docker.io",
                                        frozenset({"auth.docker.io"}))


async def test_credentials_not_sent_to_foreign_realm(fake_servers: list[FakeServer], tmp_path: Path) -> None:
    tokens = FakeServer(lambda req: Reply(200, {"Content-Type": "application/json"}, b'{"token":"anon"}'))
    fake_servers.append(tokens)
    app = _challenge_app(f"http://localhost:{tokens.port}/token")  # another host name: another origin
    fake_servers.append(app)
    opts = TransferOptions(plain_http=frozenset({app.host}), credentials={app.host: Credentials("u", "secret")},
                           retries=0)
    with pytest.raises(NotFoundInRegistry, match="manifest unknown"):
        await pull_image(Store.open(tmp_path / "s"), f"{app.host}/a/b:v1", opts)
    assert tokens.requests and all("authorization" not in r.headers for r in tokens.requests)
    assert app.requests[-1].headers.get("authorization") == "Bearer anon"


async def test_cross_origin_redirect_drops_authorization(anon_registry: RegistryServer,
                                                         fake_servers: list[FakeServer], tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    repo = unique_repo()
    image = anon_registry.ref(repo, "v1")
    make_gadget_image(src, image)
    await push_image(src, image, TransferOptions(insecure_registries=frozenset({anon_registry.host})))

    import urllib.request

    def cdn(req: Request) -> Reply:
        with urllib.request.urlopen(f"http://{anon_registry.host}{req.path}") as resp:
            return Reply(200, {"Content-Type": "application/octet-stream"}, resp.read())

    cdn_server = FakeServer(cdn)
    fake_servers.append(cdn_server)
    secret = "Basic " + base64.b64encode(b"u:secret").decode()

    def front(req: Request) -> Reply:
        if req.headers.get("authorization") != secret:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="x"'})
        if "/blobs/" in req.path:
            return Reply(307, {"Location": f"http://127.0.0.1:{cdn_server.port}{req.path}"})
        with urllib.request.urlopen(urllib.request.Request(
                f"http://{anon_registry.host}{req.path}", headers={"Accept": req.headers.get("accept", "")})) as resp:
            return Reply(200, {"Content-Type": resp.headers["Content-Type"],
                               "Docker-Content-Digest": resp.headers.get("Docker-Content-Digest", "")}, resp.read())

    front_server = FakeServer(front)
    fake_servers.append(front_server)
    opts = TransferOptions(plain_http=frozenset({front_server.host}),
                           credentials={front_server.host: Credentials("u", "secret")}, retries=0)
    dst = Store.open(tmp_path / "dst")
    await pull_image(dst, f"{front_server.host}/{repo}:v1", opts)
    assert cdn_server.requests and all("authorization" not in r.headers for r in cdn_server.requests)
    assert graph_digests(dst, f"{front_server.host}/{repo}:v1") == graph_digests(src, image)


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (401, AuthError, r"authentication required \(401 Unauthorized\); a plain-HTTP registry gets only "
                         r"credentials stored for it: gadgetstore login 127.0.0.1:\d+ --insecure-registries"),
        (403, AuthError, r"access denied \(403 Forbidden\): denied: no way"),
        (404, NotFoundInRegistry, r"not found \(404\)"),
        (429, RateLimited, r"too many requests \(429\), gave up after 1 retries"),
        (503, RegistryUnavailable, "registry error 503 .*gave up after 1 retries"),
    ],
)
async def test_status_messages(status: int, error: type[Exception], message: str, fake_servers: list[FakeServer],
                               tmp_path: Path) -> None:
    body = json.dumps({"errors": [{"code": "DENIED", "message": "no way"}]}).encode()
    headers = {"Content-Type": "application/json", "Retry-After": "0"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="x"'
    app = FakeServer(lambda req: Reply(status, headers, body))
    fake_servers.append(app)
    opts = TransferOptions(insecure_registries=frozenset({app.host}), retries=1, backoff_base=0.01)
    with pytest.raises(error, match=message):
        await pull_image(Store.open(tmp_path / "s"), f"{app.host}/a/b:v1", opts)


async def test_token_push_with_cross_repo_mount(plain: RegistryServer, token_server: TokenServer,
                                                tmp_path: Path) -> None:
    from gadgetstore.engine.reference import normalize

    image, src = await _publish(plain, tmp_path)
    root = src.resolve(str(normalize(image)))
    other = plain.ref(unique_repo(), "v1")
    with src.transaction() as txn:
        txn.tag(str(normalize(other)), root)
    token_server.requests.clear()
    pushed = await push_image(src, other, _plain(plain, True))
    assert pushed.blobs_mounted == 3
    scopes = [s for r in token_server.requests for s in r["query"].get("scope", [])]
    assert any(s.endswith(":pull") and normalize(image).path in s for s in scopes)


async def test_identity_token_uses_oauth2_refresh_grant(fake_servers: list[FakeServer], tmp_path: Path) -> None:
    from urllib.parse import parse_qs

    def handler(req: Request) -> Reply:
        if req.path.startswith("/token"):
            form = parse_qs(req.body.decode())
            ok = req.method == "POST" and form.get("grant_type") == ["refresh_token"] and \
                form.get("refresh_token") == ["idt"] and form.get("scope") == ["repository:a/b:pull"]
            return Reply(200 if ok else 400, {"Content-Type": "application/json"}, b'{"access_token":"from-refresh"}')
        if req.headers.get("authorization") != "Bearer from-refresh":
            realm = f"http://127.0.0.1:{app.port}/token"
            return Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="svc",scope="repository:a/b:pull"'})
        return Reply(404, {}, b"")

    app = FakeServer(handler)
    fake_servers.append(app)
    opts = TransferOptions(plain_http=frozenset({app.host}),
                           credentials={app.host: Credentials(identity_token="idt")}, retries=0)
    with pytest.raises(NotFoundInRegistry):
        await pull_image(Store.open(tmp_path / "s"), f"{app.host}/a/b:v1", opts)
    assert [r.method for r in app.requests if r.path.startswith("/token")] == ["POST"]


async def test_upload_location_on_another_origin_gets_no_credentials(fake_servers: list[FakeServer],
                                                                     tmp_path: Path) -> None:
    uploads = FakeServer(lambda req: Reply(201 if req.method == "PUT" else 202, {"Location": "/done"}))
    fake_servers.append(uploads)
    secret = "Basic " + base64.b64encode(b"u:secret").decode()

    def front(req: Request) -> Reply:
        if req.headers.get("authorization") != secret:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="x"'})
        if req.method == "HEAD":
            return Reply(404)
        if req.method == "POST":
            return Reply(202, {"Location": f"http://127.0.0.1:{uploads.port}/upload/1?state=abc"})
        return Reply(201)

    app = FakeServer(front)
    fake_servers.append(app)
    src = Store.open(tmp_path / "src")
    image = f"{app.host}/a/b:v1"
    make_gadget_image(src, image)
    opts = TransferOptions(plain_http=frozenset({app.host}), credentials={app.host: Credentials("u", "secret")},
                           retries=0)
    pushed = await push_image(src, image, opts)
    assert pushed.blobs_uploaded == 3
    assert len(uploads.requests) == 3 and all("authorization" not in r.headers for r in uploads.requests)
    assert all(r.path.startswith("/upload/1?state=abc&digest=sha256%3A") for r in uploads.requests)


async def test_token_realm_redirect_never_carries_credentials(fake_servers: list[FakeServer], tmp_path: Path) -> None:
    """A realm we may send credentials to answers with a redirect elsewhere: nothing follows it there."""
    thief = FakeServer(lambda req: Reply(200, {"Content-Type": "application/json"}, b'{"token":"stolen"}'))
    fake_servers.append(thief)
    tokens = FakeServer(lambda req: Reply(302, {"Location": f"http://localhost:{thief.port}/steal"}))
    fake_servers.append(tokens)
    app = _challenge_app(f"http://127.0.0.1:{tokens.port}/token")  # same host as the registry: creds allowed
    fake_servers.append(app)
    opts = TransferOptions(plain_http=frozenset({app.host}), credentials={app.host: Credentials("u", "secret")},
                           retries=0)
    with pytest.raises(GadgetStoreError, match="token request"):
        await pull_image(Store.open(tmp_path / "s"), f"{app.host}/a/b:v1", opts)
    assert tokens.requests and tokens.requests[0].headers.get("authorization", "").startswith("Basic ")
    assert all("authorization" not in r.headers for r in thief.requests)


async def test_a_401_that_arrives_after_a_new_token_reuses_it(fake_servers: list[FakeServer]) -> None:
    """Two first requests at once: the slow one's 401 comes after the fast one got a token, which
    was fetched after the slow one was sent, so it is reused: one token request, not two."""
    slow_sent, fast_authorized = threading.Event(), threading.Event()

    def handler(req: Request) -> Reply:
        if req.path.startswith("/token"):
            return Reply(200, {"Content-Type": "application/json"}, b'{"token":"t0k"}')
        if req.headers.get("authorization") != "Bearer t0k":
            if req.path.endswith("/slow"):
                slow_sent.set()
                fast_authorized.wait(10)  # answer 401 only once the fast one came back with its token
            realm = f"http://127.0.0.1:{app.port}/token"
            return Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="svc",scope="repository:a/b:pull"'})
        if req.path.endswith("/fast"):
            fast_authorized.set()
        return Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

    app = FakeServer(handler)
    fake_servers.append(app)
    async with Session(TransferOptions(plain_http=frozenset({app.host}), retries=0)) as session:
        client = await session.client(app.host)

        async def get(tag: str) -> None:
            with pytest.raises(NotFoundInRegistry):
                await client.request("GET", f"/v2/a/b/manifests/{tag}", scopes=("repository:a/b:pull",))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(get, "slow")
            assert await trio.to_thread.run_sync(slow_sent.wait, 10)  # the slow one is sent first
            nursery.start_soon(get, "fast")
    assert len([r for r in app.requests if r.path.startswith("/token")]) == 1
    assert [r.headers.get("authorization") for r in app.requests if r.path.endswith("/slow")] == [None, "Bearer t0k"]
