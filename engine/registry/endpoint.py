"""Where a registry client's requests go, and what may go there: an upstream, a mirror, a peer.

A :class:`~.client.RegistryClient` talks to one :class:`Endpoint`. The three kinds differ only in
these values, so the client has no case for any of them::

    endpoint   a path's URL                 stored credentials,   retries   held on purpose
                                            certificate directory
    upstream   as it is                     its own               policy    never
    mirror     path prefix, ns=<upstream>   none (its CA only)    none      never
    peer       ns=<upstream>, wait=<s>      none                  none      up to wait

A mirror or a peer is an optimisation: when it fails, the next source is tried at once
(:mod:`.mirrors`), and nothing stored for the upstream ever reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .http import Origin, origin_of
from .mirrors_config import Mirror


@dataclass(frozen=True)
class Endpoint:
    """One place to send registry requests, with its rules."""

    label: str  # how messages and source tallies name it
    base_url: str  # scheme://host[:port]
    insecure: bool = False  # plain HTTP on purpose: no anonymous token dance without stored credentials
    registry: str | None = None  # the registry name its stored credentials and certificate directory are under
    retries: bool = True
    ca_file: Path | None = None  # trusted for this endpoint only
    path_prefix: str = ""
    namespace: str = ""  # the upstream it stands in for (``ns=``); empty for the upstream itself
    hold: Callable[[], float] | None = None  # seconds it may hold a request (``wait=``), asked per request

    @classmethod
    def upstream(cls, domain: str, insecure: bool, plain_http: bool) -> Endpoint:
        """The registry ``domain`` itself; ``plain_http`` (``--plain-http``) keeps its credentials and
        token dance, ``insecure`` (``--insecure-registries``) only its stored credentials."""
        scheme = "http" if insecure or plain_http else "https"
        return cls(domain, f"{scheme}://{registry_host(domain)}", insecure=insecure, registry=domain)

    @classmethod
    def mirror(cls, config: Mirror, upstream: str) -> Endpoint:
        return cls(config.label, config.base_url, insecure=config.insecure, retries=False, ca_file=config.ca_file,
                   path_prefix=config.path_prefix, namespace=upstream)

    @classmethod
    def peer(cls, url: str, upstream: str, wait: Callable[[], float]) -> Endpoint:
        """A ``gadgetstore serve`` peer, asked to hold a blob request ``wait()`` seconds while its own
        pull may still be fetching the blob."""
        return cls(url, url, insecure=True, retries=False, namespace=upstream, hold=wait)

    @property
    def origin(self) -> Origin:
        return origin_of(self.base_url)

    @property
    def is_mirror(self) -> bool:
        """A mirror or a peer: it answers for the upstream with what it holds, which may be less."""
        return bool(self.namespace)

    def url(self, path: str) -> str:
        """The URL of a ``/v2/...`` path (and query) here."""
        return self.target(path)[0]

    def target(self, path: str) -> tuple[str, float]:
        """The URL of a ``/v2/...`` path (and query) here, and the seconds it may hold that request
        before answering, on purpose: the ``wait=`` the URL asks for, read once, so the stall
        check's grace (:class:`~.stall.RateMeter`) is the wait the peer was asked for, whatever the
        batch decides about the peer meanwhile."""
        if not self.namespace:
            return self.base_url + path, 0.0
        if self.path_prefix and path.startswith("/v2/") and len(path) > 4:
            path = f"/v2/{self.path_prefix}/{path[4:]}"
        url = f"{self.base_url}{path}{'&' if '?' in path else '?'}ns={quote(self.namespace, safe='')}"
        if self.hold is None:
            return url, 0.0
        wait = self.hold()
        return f"{url}&wait={wait:g}", wait


def registry_host(domain: str) -> str:
    return "registry-1.docker.io" if domain in ("docker.io", "index.docker.io") else domain
