"""Authenticating one request to a registry, as a flow without I/O: a 401 in, the next request out.

:class:`RegistryClient <.client.RegistryClient>` does the sending; this module decides. For each
request the client makes an :class:`AuthFlow` and asks it what to send first (:meth:`AuthFlow.start`,
with the Authorization a previous request taught it), then hands it each 401 of the registry's own
origin (:meth:`AuthFlow.unauthorized`). The flow answers with the next step: send the request again
(:class:`Send`), or first ask a token realm (:class:`TokenRequest`), whose answer goes back through
:meth:`AuthFlow.token_answer`. The rules, all here:

- A Bearer challenge is answered with a token for the request's scopes and the challenge's own; a
  Basic one, only when the user has a username and password for the registry (else "log in first").
  Bearer wins when both are offered.
- The realm must pass :func:`~.auth.check_realm`. Credentials (Basic, or an identity token as an
  OAuth2 refresh grant) go to the realm only on the registry's host or a host the user trusts;
  anywhere else, and without credentials, the token is asked for anonymously.
- A registry reached in plain HTTP through ``--insecure-registries`` gets only the credentials stored
  for it by name, and never an anonymous token dance: without such credentials its 401 is final.
- Per request, a 401 is answered twice at most: the first challenge, then once more only if the
  registry says the token was invalid or short of scope (a Basic password refused twice is wrong).
- Concurrent requests share tokens: a 401 to a request sent before a token for its scopes arrived
  was for the lack of that token, so the token is reused instead of asked for again
  (:meth:`AuthFlow.reused`, which the client asks holding its per-scope lock).
- The challenge a registry made stays with it (:class:`RegistryAuth`): later requests send Basic or
  their scopes' token up front.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from .auth import (
    Challenge,
    TokenCache,
    basic_header,
    check_realm,
    may_send_credentials,
    parse_challenges,
    parse_token_response,
)
from .authfile import Credentials
from .errors import AuthError

MAX_ROUNDS = 2  # 401s answered per request: the first challenge, then one renewal
RENEWING_ERRORS = frozenset({"insufficient_scope", "invalid_token"})
CLIENT_ID = "gadgetstore"  # the OAuth2 client_id of a refresh grant


@dataclass
class RegistryAuth:
    """One registry's side of auth, shared by every request to it: what it may be sent, the
    challenge it made last, its tokens by scope set."""

    domain: str  # how messages name the registry
    scheme: str  # of the registry's own origin
    host: str
    credentials: Credentials | None = None
    stored_only: bool = False  # plain HTTP via --insecure-registries: no anonymous token dance
    trusted_realm_hosts: frozenset[str] = frozenset()
    challenge: Challenge | None = None
    tokens: TokenCache = field(default_factory=TokenCache)

    def authorization(self, scopes: tuple[str, ...], now: float) -> str | None:
        """The header a request for ``scopes`` carries from the start, if the registry asked for one."""
        if self.challenge is None:
            return None
        if self.challenge.scheme == "basic":
            return basic_header(self.credentials) if self.credentials else None
        token = self.tokens.get(scopes, now)
        return f"Bearer {token}" if token else None


@dataclass(frozen=True)
class Send:
    """Send the request (again) with this Authorization on the registry's own origin (None: without)."""

    authorization: str | None


@dataclass(frozen=True)
class TokenRequest:
    """Ask the realm for a token; not followed if redirected (a redirect would carry the Basic
    header or the refresh token elsewhere). The token is stored for ``key``, the request's scopes.
    ``reuse_since``: a token for ``key`` stored at or after this time is used instead (None: a new
    one is needed whatever came meanwhile)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    realm: str
    key: tuple[str, ...]
    reuse_since: float | None


@dataclass(frozen=True)
class Unauthorized:
    """A 401 from the registry's own origin to the request sent at ``sent_at``."""

    www_authenticate: tuple[str, ...]  # the header's values, in order
    detail: str  # the registry's error text, one line
    sent_at: float


@dataclass(frozen=True)
class TokenAnswer:
    status: int
    body: bytes  # the token response when the status is 200
    detail: str = ""  # the realm's error text otherwise


class AuthFlow:
    """The steps of one request's authentication (see the module's rules); raises :class:`AuthError`
    when the request cannot be authenticated. ``clock`` is the time the token cache counts in;
    ``wall_clock`` reads a token's ``issued_at``."""

    def __init__(self, auth: RegistryAuth, scopes: tuple[str, ...], clock: Callable[[], float],
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.auth = auth
        self.scopes = scopes
        self._clock = clock
        self._wall_clock = wall_clock
        self.rounds = 0  # 401s answered

    def start(self) -> Send:
        return Send(self.auth.authorization(self.scopes, self._clock()))

    def unauthorized(self, answer: Unauthorized) -> Send | TokenRequest | None:
        """The next step after a 401; None: no more rounds, the 401 stands."""
        if self.rounds >= MAX_ROUNDS:
            return None
        renewing = self.rounds > 0
        self.rounds += 1
        auth, detail = self.auth, answer.detail
        if auth.stored_only and auth.credentials is None:
            raise AuthError(f"{auth.domain}: authentication required (401 Unauthorized); a plain-HTTP registry "
                            f"gets only credentials stored for it: gadgetstore login {auth.domain} "
                            f"--insecure-registries {auth.domain}" + (f" ({detail})" if detail else ""))
        challenges = parse_challenges(list(answer.www_authenticate))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            if renewing and bearer.error not in RENEWING_ERRORS:
                raise AuthError(f"{auth.domain}: 401 Unauthorized" + (f": {detail}" if detail else ""))
            auth.challenge = bearer
            return self._token_request(bearer, None if renewing else answer.sent_at)
        if basic is None:
            raise AuthError(f"{auth.domain}: authentication required (401 Unauthorized) with no usable challenge")
        if auth.credentials is None or not auth.credentials.username:
            raise AuthError(f"{auth.domain}: authentication required (401 Unauthorized); log in first")
        if renewing:
            raise AuthError(f"{auth.domain}: 401 Unauthorized: invalid username or password")
        auth.challenge = basic
        return self.start()

    def _token_request(self, challenge: Challenge, reuse_since: float | None) -> TokenRequest:
        auth, realm = self.auth, challenge.realm
        check_realm(realm, auth.scheme, auth.host)
        scopes = sorted(set(self.scopes) | set(challenge.params.get("scope", "").split()) - {""})
        query: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query.extend(("scope", s) for s in scopes)
        creds = auth.credentials
        if creds is not None and not may_send_credentials(realm, auth.host, auth.trusted_realm_hosts):
            creds = None  # a realm elsewhere gets an anonymous request
        headers = [("Accept", "application/json")]
        if creds is not None and creds.identity_token:
            form = [("grant_type", "refresh_token"), ("refresh_token", creds.identity_token),
                    ("client_id", CLIENT_ID), *query]
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            return TokenRequest("POST", realm, tuple(headers), urlencode(form).encode(), realm, self.scopes,
                                reuse_since)
        if creds is not None and creds.username:
            headers.append(("Authorization", basic_header(creds)))
            query.append(("account", creds.username))
        url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
        return TokenRequest("GET", url, tuple(headers), None, realm, self.scopes, reuse_since)

    def reused(self, request: TokenRequest) -> Send | None:
        """The request again with a token another request got since (no token request); None: ask."""
        if request.reuse_since is None:
            return None
        if not self.auth.tokens.fetched_since(request.key, request.reuse_since, self._clock()):
            return None
        return self.start()

    def token_answer(self, request: TokenRequest, answer: TokenAnswer) -> Send:
        """Store the realm's token and send the request again with it."""
        domain = self.auth.domain
        if answer.status != 200:
            what = "invalid username or password" if answer.status == 401 else f"status {answer.status}"
            raise AuthError(f"{domain}: token request to {request.realm} failed: {what}"
                            + (f" ({answer.detail})" if answer.detail else ""))
        token = parse_token_response(answer.body, self._wall_clock(), f"{domain} token realm")
        self.auth.tokens.put(request.key, token, self._clock())
        return self.start()
