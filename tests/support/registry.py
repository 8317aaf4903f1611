"""Real ``docker-registry`` (distribution 2.8) instances for tests, in three auth modes.

Use as a pytest plugin (``pytest_plugins = ["tests.support.registry"]`` in the top-level conftest,
with the project root importable, e.g. ``pythonpath = ["."]``), or import the fixtures into a
directory's conftest as tests/engine/registry/conftest.py does. Fixtures:
``anon_registry``, ``htpasswd_registry`` (bcrypt users over TLS with a test CA),
``plain_htpasswd_registry`` (the same users over plain HTTP) and ``token_registry`` (bearer
tokens from a :class:`TokenServer` the tests run). They are
session-scoped: give each test its own repository name (:func:`unique_repo`). Or call
:func:`start_registry` directly (benchmarks do). Every process started here is killed at teardown.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support import httpserver
from tests.support.fakes import FaultProxy
from tests.support.images import make_gadget_image

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
TEST_USER = "tester"
TEST_PASSWORD = "s3cret-Pa55"
TOKEN_SERVICE = "gadgetstore-test-registry"
TOKEN_ISSUER = "gadgetstore-test-issuer"
PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_repo(prefix: str = "test") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


async def push_gadget_image(registry: RegistryServer, src: Store, prefix: str, options: TransferOptions,
                            **image: Any) -> str:
    """Build a gadget image in ``src`` (with :func:`make_gadget_image`'s keywords) and push it to
    ``registry`` as ``<prefix>/<unique>:v1``; returns the repository."""
    repo = unique_repo(prefix)
    ref = registry.ref(repo, "v1")
    make_gadget_image(src, ref, **image)
    await push_image(src, ref, options)
    return repo


# -- certificates ------------------------------------------------------------------------------


@dataclass
class TestCA:
    """A throwaway CA and one server certificate for 127.0.0.1/localhost."""

    dir: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


def make_test_ca(directory: Path) -> TestCA:
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("gadgetstore test CA")).issuer_name(_name("gadgetstore test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = TestCA(directory, directory / "ca.crt", directory / "server.cert.pem", directory / "server.key.pem")
    out.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, out.server_key)
    return out


# -- token server ------------------------------------------------------------------------------


@dataclass
class TokenServer:
    """A bearer-token issuer (JWT, ES256, signing cert in ``x5c``) that tests can steer.

    ``users`` may get every action they ask for; anonymous clients get ``anonymous_actions``.
    ``expired_tokens`` makes the next N tokens already expired (beyond the registry's leeway);
    ``expires_in``/``issued_at_offset`` shape what the client is told. ``requests`` records
    every query with the Authorization header that came with it.
    """

    directory: Path
    users: dict[str, str] = field(default_factory=lambda: {TEST_USER: TEST_PASSWORD})
    anonymous_actions: tuple[str, ...] = ("pull",)
    expires_in: int = 300
    issued_at_offset: float = 0.0
    expired_tokens: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    host: str = "127.0.0.1"
    _server: httpserver.QuietHTTPServer | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(_name("token signer")).issuer_name(_name("token signer"))
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .sign(self._key, hashes.SHA256())
        )
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.cert_bundle = self.directory / "token-signer.pem"
        self.cert_bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._lock = threading.Lock()

    @property
    def realm(self) -> str:
        return f"http://{self.host}:{self.port}/token"

    def issue(self, account: str | None, scopes: list[str]) -> dict[str, Any]:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) != 3 or parts[0] != "repository":
                continue
            asked = parts[2].split(",")
            allowed = asked if account else [a for a in asked if a in self.anonymous_actions]
            access.append({"type": "repository", "name": parts[1], "actions": allowed})
        now = int(time.time())
        with self._lock:
            expired = self.expired_tokens > 0
            if expired:
                self.expired_tokens -= 1
        exp = now - 600 if expired else now + max(self.expires_in, 60) + 60
        claims = {"iss": TOKEN_ISSUER, "sub": account or "", "aud": TOKEN_SERVICE, "exp": exp,
                  "nbf": now - 700, "iat": now - 700 if expired else now, "jti": uuid.uuid4().hex, "access": access}
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": [self._x5c]})
        issued = dt.datetime.fromtimestamp(time.time() + self.issued_at_offset, dt.UTC)
        return {"token": token, "access_token": token, "expires_in": self.expires_in,
                "issued_at": issued.isoformat().replace("+00:00", "Z")}

    def start(self) -> None:
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                header = self.headers.get("Authorization")
                server_self.requests.append({"query": query, "authorization": header})
                account = None
                if header:
                    if not header.startswith("Basic "):
                        self._reply(401, {"details": "bad auth"})
                        return
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if server_self.users.get(user) != password:
                        self._reply(401, {"details": "invalid credentials"})
                        return
                    account = user
                self._reply(200, server_self.issue(account, query.get("scope", [])))

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = httpserver.serve(Handler, self.host if self.host != "localhost" else "127.0.0.1", self.port)
        self.port = self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            httpserver.stop(self._server)
            self._server = None


# -- the registry process ----------------------------------------------------------------------


@dataclass
class RegistryServer:
    """A running registry; ``host`` (``127.0.0.1:<port>``) is what image references start with."""

    host: str
    scheme: str
    storage: Path
    process: subprocess.Popen[bytes]
    ca: TestCA | None = None
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def ref(self, repo: str, tag: str = "latest") -> str:
        return f"{self.host}/{repo}:{tag}"


def _wait_ready(server: RegistryServer, log: Path, timeout: float = 15.0) -> None:
    import ssl

    ctx = ssl.create_default_context(cafile=str(server.ca.ca_cert)) if server.ca else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(server.url + "/v2/", timeout=1, context=ctx)
            return
        except urllib.error.HTTPError as err:
            if err.code == 401:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not start: {log.read_text(errors='replace')[-2000:]}")


def _htpasswd_line(user: str, password: str) -> str:
    out = subprocess.run(["htpasswd", "-nbB", user, password], check=True, capture_output=True, text=True)
    return out.stdout.strip() + "\n"


@contextlib.contextmanager
def start_registry(
    directory: Path, mode: str = "anonymous", token_server: TokenServer | None = None,
    extra_config: dict[str, Any] | None = None,
) -> Iterator[RegistryServer]:
    """Run ``docker-registry serve`` in ``mode`` ``anonymous`` | ``htpasswd`` | ``htpasswd-http`` | ``token``
    until the block ends (``htpasswd`` is over TLS, ``htpasswd-http`` the same users over plain HTTP)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(directory / "data")}, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
    }
    ca = None
    scheme = "http"
    if mode in ("htpasswd", "htpasswd-http"):
        if mode == "htpasswd":
            ca = make_test_ca(directory / "tls")
            config["http"]["tls"] = {"certificate": str(ca.server_cert), "key": str(ca.server_key)}
            scheme = "https"
        htpasswd = directory / "htpasswd"
        htpasswd.write_text(_htpasswd_line(TEST_USER, TEST_PASSWORD))
        config["auth"] = {"htpasswd": {"realm": "gadgetstore-test", "path": str(htpasswd)}}
    elif mode == "token":
        assert token_server is not None, "token mode needs a TokenServer"
        config["auth"] = {"token": {"realm": token_server.realm, "service": TOKEN_SERVICE,
                                    "issuer": TOKEN_ISSUER, "rootcertbundle": str(token_server.cert_bundle)}}
    elif mode != "anonymous":
        raise ValueError(f"unknown registry mode {mode!r}")
    if extra_config:
        config.update(extra_config)
    config_path = directory / "config.yml"
    log = directory / "registry.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    for attempt in range(PORT_ATTEMPTS):
        # The port was free when picked, but any connection's source port may take it before the
        # registry binds it: then the registry exits at once, and another port is tried.
        if attempt:
            port = free_port()
            config["http"]["addr"] = f"127.0.0.1:{port}"
        config_path.write_text(yaml.safe_dump(config))
        with open(log, "wb") as log_file:
            process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config_path)], stdout=log_file,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        server = RegistryServer(f"127.0.0.1:{port}", scheme, directory / "data", process, ca,
                                TEST_USER if mode != "anonymous" else None,
                                TEST_PASSWORD if mode != "anonymous" else None, token_server)
        try:
            _wait_ready(server, log)
            break
        except RuntimeError:
            process.kill()
            process.wait()
            if "address already in use" not in log.read_text(errors="replace") or attempt == PORT_ATTEMPTS - 1:
                raise
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def start_token_registry(directory: Path, host: str = "127.0.0.1") -> Iterator[RegistryServer]:
    """A token-mode registry together with its running :class:`TokenServer`."""
    tokens = TokenServer(directory / "tokens", host=host)
    tokens.start()
    try:
        with start_registry(directory / "registry", "token", tokens) as server:
            yield server
    finally:
        tokens.stop()


# -- pytest fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def anon_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with start_registry(tmp_path_factory.mktemp("anon-registry")) as server:
        yield server


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with start_registry(tmp_path_factory.mktemp("htpasswd-registry"), "htpasswd") as server:
        yield server


@pytest.fixture(scope="session")
def plain_htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with start_registry(tmp_path_factory.mktemp("plain-htpasswd-registry"), "htpasswd-http") as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with start_token_registry(tmp_path_factory.mktemp("token-registry")) as server:
        yield server


@pytest.fixture
def proxy(anon_registry: RegistryServer) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of the anonymous registry, closed after the test."""
    server = FaultProxy(anon_registry.host)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def cert_dir(htpasswd_registry: RegistryServer, tmp_path: Path) -> Path:
    """A ``--cert-dir`` holding the TLS registry's CA, as ``login --cert-dir`` expects it."""
    assert htpasswd_registry.ca is not None
    directory = tmp_path / "certs"
    directory.mkdir()
    shutil.copy(htpasswd_registry.ca.ca_cert, directory / "ca.crt")
    return directory


@pytest.fixture
def token_server(token_registry: RegistryServer) -> Iterator[TokenServer]:
    """The token registry's issuer, reset to friendly defaults after each test."""
    server = token_registry.token_server
    assert server is not None
    yield server
    server.expires_in, server.issued_at_offset, server.expired_tokens = 300, 0.0, 0
    server.anonymous_actions = ("pull",)
    server.requests.clear()


