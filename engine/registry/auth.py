"""Registry auth without I/O: challenges, realm checks, token responses, the token cache; the
flow that applies them to a request is :mod:`.authflow`.

Rules that keep credentials at home (oras-go GHSA-xf85-363p-868w, containerd CVE-2020-15157):
a realm must be http(s), never http when the registry was reached over https, and never an
IP literal in a loopback/link-local/private range unless the registry itself is on that host.
Basic credentials go to the realm only when it is on the registry's host or a host the user
trusts; otherwise an anonymous token is asked for.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from ..gojson import go_loads
from .authfile import Credentials
from .errors import AuthError

DEFAULT_TOKEN_LIFETIME = 60.0
EXPIRY_MARGIN = 5.0
MIN_USABLE = 5.0  # a token is always good for its first retry, whatever clock skew says
_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lowercased
    params: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def error(self) -> str:
        return self.params.get("error", "")


def parse_challenges(values: list[str]) -> list[Challenge]:
    """``WWW-Authenticate`` values (RFC 7235) as a list, in header order."""
    out: list[Challenge] = []
    for value in values:
        rest = value.strip()
        while rest:
            scheme, _, rest = rest.partition(" ")
            params: dict[str, str] = {}
            while True:
                match = _PARAM_RE.match(rest)
                if match is None or not match.group(0).strip():
                    break
                params[match.group(1).lower()] = (
                    re.sub(r"\\(.)", r"\1", match.group(2)) if match.group(2) is not None else match.group(3)
                )
                rest = rest[match.end():]
            out.append(Challenge(scheme.strip().lower(), params))
            rest = rest.strip().lstrip(",").strip()
    return out


def _is_internal_ip(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_unspecified or ip.is_multicast


def check_realm(realm: str, registry_scheme: str, registry_host: str) -> None:
    """Refuse a token realm that would downgrade TLS or reach into internal addresses."""
    try:
        parts = urlsplit(realm)
        scheme, host, _port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # e.g. an unclosed IPv6 bracket or a port out of range
        scheme, host = "", None
    if scheme not in ("http", "https") or not host or " " in realm or "\t" in realm:
        raise AuthError(f"refusing token realm {realm!r}: not an http(s) URL")
    if registry_scheme == "https" and scheme == "http":
        raise AuthError(f"refusing token realm {realm!r}: registry uses https, realm uses plain http")
    host = host.lower()
    if host != registry_host.lower() and _is_internal_ip(host):
        raise AuthError(f"refusing token realm {realm!r}: internal address not on the registry's host")


def may_send_credentials(realm: str, registry_host: str, trusted_hosts: frozenset[str]) -> bool:
    host = (urlsplit(realm).hostname or "").lower()
    return host == registry_host.lower() or host in trusted_hosts


def basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


@dataclass(frozen=True)
class Token:
    value: str
    lifetime: float  # seconds left when it was received, after accounting for issued_at


def parse_token_response(data: bytes, now_epoch: float, where: str) -> Token:
    """``token``/``access_token``, ``expires_in`` (default 60 s) and ``issued_at`` of a token reply."""
    try:
        obj = go_loads(data)
    except (ValueError, UnicodeDecodeError):
        raise AuthError(f"{where}: token response is not JSON") from None
    if not isinstance(obj, dict):
        raise AuthError(f"{where}: token response is not a JSON object")
    value = obj.get("token") or obj.get("access_token")
    if not isinstance(value, str) or not value:
        raise AuthError(f"{where}: token response has no token")
    expires = obj.get("expires_in")
    lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else DEFAULT_TOKEN_LIFETIME
    issued = obj.get("issued_at")
    if isinstance(issued, str):
        try:
            age = now_epoch - datetime.fromisoformat(issued.replace("Z", "+00:00")).timestamp()
        except ValueError:
            age = 0.0
        lifetime -= max(0.0, age)
    return Token(value, lifetime)


class TokenCache:
    """Bearer tokens by scope set, considered stale a little before they expire."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._fetched: dict[tuple[str, ...], float] = {}

    def get(self, scopes: tuple[str, ...], now: float) -> str | None:
        entry = self._tokens.get(scopes)
        if entry is None or now >= entry[1]:
            return None
        return entry[0]

    def put(self, scopes: tuple[str, ...], token: Token, now: float) -> None:
        usable = max(MIN_USABLE, token.lifetime - min(EXPIRY_MARGIN, token.lifetime / 2))
        self._tokens[scopes] = (token.value, now + usable)
        self._fetched[scopes] = now

    def fetched_since(self, scopes: tuple[str, ...], since: float, now: float) -> bool:
        """Whether another task got a token for ``scopes`` at or after ``since`` that is usable ``now``."""
        return self._fetched.get(scopes, -1.0) >= since and self.get(scopes, now) is not None
