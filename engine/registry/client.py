"""One registry endpoint as seen by a transfer: the I/O of auth, redirects, retries, and error messages.

A :class:`Session` owns the connection pool and one :class:`RegistryClient` per endpoint (a
registry, a mirror, a peer: :mod:`.endpoint`), so many concurrent pulls share keep-alive
connections and tokens. What to send after a 401 is decided by :mod:`.authflow`, when to try again
by :mod:`.retry`; the client performs it. ``Authorization`` is attached per hop, and only when that
hop's origin is the endpoint's own: a redirect to a CDN or an upload ``Location`` on another host
gets no credentials.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import trio

from ..gojson import go_loads
from .authfile import Credentials, credentials_for
from .authflow import AuthFlow, RegistryAuth, Send, TokenAnswer, TokenRequest, Unauthorized
from .endpoint import Endpoint
from .errors import AuthError, NotFoundInRegistry, RateLimited, RegistryError, RegistryUnavailable, TransportError
from .http import ClientResponse, Headers, Origin, Pool, join_url, one_line, origin_of
from .inflight import InFlight, request_label
from .mirrors_config import RegistriesConfig
from .retry import RetryPolicy, parse_retry_after
from .stall import StallPolicy

MAX_TOKEN_BYTES = 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
MAX_DETAIL = 200  # characters of a registry's error text in a message
MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


@dataclass
class TransferOptions:
    """Knobs shared by pull, push and login; defaults suit gadget-sized images."""

    authfile: Path | None = None
    insecure_registries: frozenset[str] = frozenset()
    plain_http: frozenset[str] = frozenset()  # like ig login --plain-http: http, but credentials still sent
    ca_file: Path | None = None
    cert_dir: Path | None = None
    credentials: dict[str, Credentials] = field(default_factory=dict)
    tls_verify: bool = True  # False: as ig login --tls-verify=false, no certificate or host name check
    trusted_realm_hosts: frozenset[str] = frozenset({"auth.docker.io"})
    max_connections_per_origin: int = 8
    max_concurrent_blobs: int = 16
    max_concurrent_images: int = 16
    range_threshold: int = 8 * 1024 * 1024
    chunk_size: int = 8 * 1024 * 1024
    chunk_parallelism: int = 4
    upload_chunk_size: int = 8 * 1024 * 1024
    retries: int = 4
    backoff_base: float = 0.2
    backoff_max: float = 8.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    registries: RegistriesConfig | None = None  # mirrors per upstream (see .mirrors)
    peer_self: str | None = None  # this node's own peer URL (see .peers.find_self)
    stall: StallPolicy | None = None  # None: the registries config's [transfer], else the defaults
    in_flight: InFlight | None = None  # what --timeout names; None: the session keeps its own

    def endpoint(self, domain: str) -> Endpoint:
        """The registry ``domain`` itself, reached as these options say."""
        return Endpoint.upstream(domain, domain in self.insecure_registries, domain in self.plain_http)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.retries, self.backoff_base, self.backoff_max)

    @property
    def stall_policy(self) -> StallPolicy:
        if self.stall is not None:
            return self.stall
        return self.registries.stall if self.registries is not None else StallPolicy()

    def cert_dir_for(self, domain: str) -> Path | None:
        """``--cert-dir`` for every registry, else the registries config's ``cert_dir`` of ``domain``."""
        if self.cert_dir is not None or self.registries is None:
            return self.cert_dir
        return self.registries.cert_dir_for(domain)


_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
TrustKey = tuple[Path | None, Path | None, bool, bool]  # make_ssl_context's ca_file, cert_dir, client_cert, verify


def make_ssl_context(ca_file: Path | None, cert_dir: Path | None, client_cert: bool = True, verify: bool = True,
                     ca_dirs: Sequence[Path] = ()) -> ssl.SSLContext:
    """System CAs plus ``ca_file``; a ``cert_dir`` adds ``*.crt`` CAs and (``client_cert``) a
    ``*.cert``/``*.key`` client pair, which only the registry itself may be shown; ``ca_dirs`` add
    only their ``*.crt`` CAs. Without ``verify`` any certificate for any host name is accepted
    (``login --tls-verify=false``), so such a context is kept apart from every verifying one."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    for directory in [*ca_dirs, *([cert_dir] if cert_dir is not None else [])]:
        if not directory.is_dir():
            raise RegistryError(f"certificate directory {directory} does not exist or is not a directory")
        for crt in sorted(directory.glob("*.crt")):
            ctx.load_verify_locations(cafile=str(crt))
    if cert_dir is not None:
        for cert in sorted(cert_dir.glob("*.cert")) if client_cert else []:
            key = cert.with_suffix(".key")
            if not key.exists():
                raise RegistryError(f"client certificate {cert} has no matching {key.name}")
            ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _error_detail(body: bytes) -> str:
    """The distribution-spec ``errors`` list as one short line."""
    try:
        obj = go_loads(body)
        errors = obj.get("errors") if isinstance(obj, dict) else None
        if isinstance(errors, list) and errors:
            parts = []
            for err in errors[:3]:
                if isinstance(err, dict):
                    code, message = str(err.get("code", "")), str(err.get("message", ""))
                    parts.append(f"{code.lower()}: {message}" if code else message)
            return one_line("; ".join(p for p in parts if p), MAX_DETAIL)
    except (ValueError, UnicodeDecodeError):
        pass
    return one_line(body[:MAX_DETAIL].decode("utf-8", "replace"), MAX_DETAIL)


def status_error(what: str, status: int, reason: str, detail: str, retries: int) -> RegistryError:
    """The error an answer with ``status`` ends a request in; ``detail``: the registry's own words."""
    suffix = f": {detail}" if detail else ""
    if status == 401:
        return AuthError(f"{what}: 401 Unauthorized{suffix}")
    if status == 403:
        return AuthError(f"{what}: access denied (403 Forbidden){suffix}")
    if status == 404:
        return NotFoundInRegistry(f"{what}: not found (404){suffix}")
    if status == 429:
        return RateLimited(f"{what}: too many requests (429), gave up after {retries} retries")
    if status >= 500:
        return RegistryUnavailable(f"{what}: registry error {status} {reason}, gave up after {retries} retries{suffix}")
    return RegistryError(f"{what}: unexpected status {status} {reason}{suffix}")


class RegistryClient:
    """Requests to one endpoint (a registry, or a mirror or peer standing in for one), authenticated
    as :mod:`.authflow` decides and retried as :mod:`.retry` says; this class does the I/O."""

    def __init__(self, endpoint: Endpoint | str, session: Session) -> None:
        """``endpoint``: where requests go; a registry's name means the registry itself."""
        self.session = session
        self.options = session.options
        self.endpoint = self.options.endpoint(endpoint) if isinstance(endpoint, str) else endpoint
        self.domain = self.endpoint.label  # names it in messages
        self.base_url = self.endpoint.base_url
        self.origin: Origin = self.endpoint.origin
        policy = self.options.retry_policy
        self.retry = policy if self.endpoint.retries else policy.without_retries()
        self.auth = RegistryAuth(self.domain, self.origin.scheme, self.origin.host, stored_only=self.endpoint.insecure,
                                 trusted_realm_hosts=self.options.trusted_realm_hosts)
        self._token_locks: dict[tuple[str, ...], trio.Lock] = {}
        self.tls: ssl.SSLContext | None = None  # its own origin's, set by Session.client_at (None: the pool's)

    def url(self, path: str) -> str:
        return self.endpoint.url(path)

    # -- auth ------------------------------------------------------------------------------------

    @property
    def credentials(self) -> Credentials | None:
        return self.auth.credentials

    async def _token(self, flow: AuthFlow, request: TokenRequest) -> Send:
        """Perform the flow's token request. One per scope set at a time: the requests that got a
        401 meanwhile reuse its token (see :meth:`.AuthFlow.reused`), so concurrent first requests
        cost one token request."""
        async with self._token_locks.setdefault(request.key, trio.Lock()):
            step = flow.reused(request)
            if step is not None:
                return step
            resp = await self._send_with_retries(request.method, request.url, request.headers, request.body, None,
                                                 follow=False, idempotent=True)
            async with resp:
                if resp.status == 200:
                    answer = TokenAnswer(200, await resp.read(MAX_TOKEN_BYTES))
                else:
                    answer = TokenAnswer(resp.status, b"", _error_detail(await self._read_error_body(resp)))
            return flow.token_answer(request, answer)

    # -- sending ---------------------------------------------------------------------------------

    async def _read_error_body(self, resp: ClientResponse) -> bytes:
        try:
            return await resp.read(MAX_ERROR_BYTES)
        except TransportError:
            await resp.aclose()
            return b""

    async def pause(self, seconds: float, label: str) -> None:
        """Wait before a retry, listed as ``label`` (what a ``--timeout`` names) meanwhile."""
        with self.session.in_flight.track(label):
            await trio.sleep(seconds)

    async def _send_with_retries(
        self, method: str, url: str, headers: Headers, body: bytes | None, authorization: str | None,
        follow: bool = True, idempotent: bool = False, grace: float = 0.0,
    ) -> ClientResponse:
        """Failures the retry policy names are tried again after its wait, when it sends such a
        request twice (:meth:`.RetryPolicy.for_request`); any other answer is returned. ``grace``:
        seconds the endpoint was asked to hold the request (:meth:`.Endpoint.target`)."""
        attempts = self.retry.for_request(method, idempotent).attempts()
        while True:
            try:
                resp = await self._send_following(method, url, headers, body, authorization, follow, grace)
            except TransportError as err:
                wait = attempts.after_error(err)
                if wait is None:
                    raise
                await self.pause(wait, f"{request_label(method, url)} (retrying)")
                continue
            wait = attempts.after_status(resp.status, parse_retry_after(resp.header("retry-after"), time.time()))
            if wait is None:
                return resp
            await resp.discard()
            await self.pause(wait, f"{request_label(method, url)} (retrying after {resp.status})")

    async def _send_following(
        self, method: str, url: str, headers: Headers, body: bytes | None, authorization: str | None,
        follow: bool, grace: float,
    ) -> ClientResponse:
        """``authorization`` goes only to the registry's own origin, hop by hop."""
        pool = self.session.pool
        for _ in range(MAX_REDIRECTS + 1):
            hop_headers = list(headers)
            own = origin_of(url) == self.origin
            if authorization is not None and own:
                hop_headers.append(("Authorization", authorization))
            resp = await pool.request(method, url, hop_headers, body, head_grace=grace if own else 0.0,
                                      tls=self.tls if own else None)
            if not follow or resp.status not in REDIRECT_STATUSES:
                return resp
            location = resp.header("location")
            await resp.discard()
            if not location:
                raise RegistryError(f"{url}: redirect without a Location header")
            target = join_url(url, location, "Location")
            if origin_of(url).scheme == "https" and origin_of(target).scheme != "https":
                raise RegistryError(f"refusing redirect from {origin_of(url)} to plain-http {origin_of(target)}")
            if origin_of(target) != origin_of(url):
                # Credentials the caller put in the headers belong to this origin only.
                headers = [(k, v) for k, v in headers if k.lower() not in _CREDENTIAL_HEADERS]
            if resp.status == 303:
                method, body = "GET", None
            url = target
        raise RegistryError(f"{url}: more than {MAX_REDIRECTS} redirects")

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scopes: tuple[str, ...],
        ok: tuple[int, ...] = (200,),
        headers: Headers = (),
        body: bytes | None = None,
        what: str = "",
        follow: bool = True,
        idempotent: bool = False,
    ) -> ClientResponse:
        """One request, authenticated as ``scopes`` need; statuses outside ``ok`` raise.
        ``idempotent``: sending it twice is harmless though its method is not GET or HEAD (a manifest
        PUT), so it is retried as they are (see :mod:`.retry`)."""
        url, grace = (path_or_url, 0.0) if "://" in path_or_url else self.endpoint.target(path_or_url)
        what = what or f"{method} {url}"
        flow = AuthFlow(self.auth, scopes, trio.current_time)
        step: Send | TokenRequest = flow.start()
        while True:
            if isinstance(step, TokenRequest):
                step = await self._token(flow, step)
                continue
            sent_at = trio.current_time()
            resp = await self._send_with_retries(method, url, headers, body, step.authorization, follow, idempotent,
                                                 grace)
            if resp.status in ok:
                return resp
            if resp.status != 401 or origin_of(resp.url) != self.origin:
                raise await self.error_for(resp, what)
            async with resp:
                detail = _error_detail(await self._read_error_body(resp))
            following = flow.unauthorized(Unauthorized(tuple(resp.header_all("www-authenticate")), detail, sent_at))
            if following is None:
                raise status_error(what, resp.status, resp.reason, detail, self.retry.retries)
            step = following

    async def request_body(self, method: str, path_or_url: str, *, scopes: tuple[str, ...], limit: int,
                           headers: Headers = (), what: str = "") -> tuple[ClientResponse, bytes]:
        """:meth:`request` and its whole (small) body, at most ``limit`` bytes: a connection error while
        the body comes, a stall included, is retried like one before the head."""
        attempts = self.retry.for_request(method).attempts()
        while True:
            resp = await self.request(method, path_or_url, scopes=scopes, headers=headers, what=what)
            async with resp:
                try:
                    return resp, await resp.read(limit)
                except TransportError as err:
                    wait = attempts.after_error(err)
                    if wait is None:
                        raise
            await self.pause(wait, f"{request_label(method, resp.url)} (retrying)")

    async def error_for(self, resp: ClientResponse, what: str) -> RegistryError:
        body = b"" if resp.method == "HEAD" else await self._read_error_body(resp)
        await resp.aclose()
        return status_error(what, resp.status, resp.reason, _error_detail(body), self.retry.retries)

    async def ping(self) -> None:
        """GET /v2/, authenticating if asked: what ``login`` verifies before storing anything."""
        resp = await self.request("GET", "/v2/", scopes=(), what=f"{self.domain}")
        await resp.discard()


class Session:
    """Pool, per-registry clients and shared limits for one batch of transfers."""

    def __init__(self, options: TransferOptions | None = None) -> None:
        self.options = options or TransferOptions()
        self._contexts: dict[TrustKey, ssl.SSLContext] = {}  # endpoints' contexts, per trust settings
        self._contexts_lock = trio.Lock()
        self._ssl_other_origins: ssl.SSLContext | None = None
        self._ssl_other_origins_lock = trio.Lock()
        self.in_flight = self.options.in_flight or InFlight()
        self.pool = Pool(
            self._other_origins_context,
            max_per_origin=self.options.max_connections_per_origin,
            connect_timeout=self.options.connect_timeout,
            read_timeout=self.options.read_timeout,
            stall=self.options.stall_policy,
            in_flight=self.in_flight,
        )
        self._clients: dict[Endpoint, RegistryClient] = {}
        self._client_locks: dict[Endpoint, trio.Lock] = {}
        self.blob_limiter = trio.CapacityLimiter(self.options.max_concurrent_blobs)

    async def _other_origins_context(self, origin: Origin | None = None) -> ssl.SSLContext:
        """The context of any origin that is not the endpoint's own (a token realm, a redirect to
        blob storage): the registries' CAs, no client certificate; unverified only in a session
        whose options say so (login's check with --tls-verify=false, which as ig's skips it for
        every request it makes). Built once, in a worker thread (it reads CA files), when the first
        such origin is reached: a session may never need it."""
        async with self._ssl_other_origins_lock:
            if self._ssl_other_origins is None:
                self._ssl_other_origins = await trio.to_thread.run_sync(self._make_other_origins_context)
            return self._ssl_other_origins

    def _make_other_origins_context(self) -> ssl.SSLContext:
        """The CAs of ``--cert-dir``, else of every ``cert_dir`` in the registries config that exists
        (a missing one fails its own registry's transfers, not every other registry's)."""
        options = self.options
        if options.cert_dir is not None:
            dirs = [options.cert_dir]
        else:
            dirs = [d for d in options.registries.all_cert_dirs() if d.is_dir()] if options.registries else []
        return make_ssl_context(options.ca_file, None, False, options.tls_verify, dirs)

    async def client(self, domain: str) -> RegistryClient:
        """The client of the registry ``domain``."""
        return await self.client_at(self.options.endpoint(domain))

    async def client_at(self, endpoint: Endpoint) -> RegistryClient:
        """The client of ``endpoint``; its credentials and TLS settings are read off the event loop.

        Creation is serialised per endpoint so many concurrent pulls run a credential helper (a
        subprocess, perhaps a keychain prompt) once, not once each.
        """
        client = self._clients.get(endpoint)
        if client is not None:
            return client
        async with self._client_locks.setdefault(endpoint, trio.Lock()):
            client = self._clients.get(endpoint)
            if client is not None:
                return client
            client = RegistryClient(endpoint, self)
            client.tls = await self._trust(endpoint)
            if endpoint.registry is not None:
                # An insecure registry gets only what was stored for it by name (a deliberate
                # ``login --insecure-registries``), as Docker sends it; never another origin's.
                client.auth.credentials = self.options.credentials.get(endpoint.registry) or \
                    await trio.to_thread.run_sync(credentials_for, endpoint.registry, self.options.authfile)
            return self._clients.setdefault(endpoint, client)

    async def _trust(self, endpoint: Endpoint) -> ssl.SSLContext | None:
        """The TLS context ``endpoint``'s origin is verified with (None: plain HTTP): a registry's
        certificate directory (its client certificate included), or a mirror's own CA and never
        the upstream's client certificate; a mirror is always verified. Keyed by those settings
        and whether to verify at all, not by the origin: two endpoints on one origin may trust
        differently."""
        if endpoint.origin.scheme != "https":
            return None
        if endpoint.registry is None:
            key: TrustKey = (endpoint.ca_file, None, False, True)
        else:
            key = (self.options.ca_file, self.options.cert_dir_for(endpoint.registry), True, self.options.tls_verify)
        async with self._contexts_lock:
            ctx = self._contexts.get(key)
            if ctx is None:
                ctx = self._contexts[key] = await trio.to_thread.run_sync(make_ssl_context, *key)
        return ctx

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
