"""Which peer owns a blob, and which peer is this node (pure, apart from the local-address probe).

Every node ranks the peers for a digest the same way (rendezvous hashing: highest
``sha256(peer URL, digest)`` first), so with one shared peer list all nodes agree on each blob's
owner without talking to each other, and a peer that drops out only moves its own blobs to the
next in rank. Only the owner fetches a blob from the mirrors or the upstream; the others fetch it
from the owner (see :mod:`.mirrors`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from ..digest import Digest
from .mirrors_config import Peers, RegistriesConfigError

SELF_ENV = "GADGETSTORE_PEER_SELF"


def rank(urls: Sequence[str], digest: Digest) -> list[str]:
    """``urls`` in the order to ask for ``digest``: its owner first."""
    def score(url: str) -> bytes:
        return hashlib.sha256(f"{url}\n{digest}".encode()).digest()

    return sorted(urls, key=score, reverse=True)


def is_local(host: str) -> bool:
    """Whether ``host`` is a non-loopback address of this machine (or network namespace): binding to
    it works. Loopback never counts: every node has it, so it cannot tell nodes apart."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, proto, _, address in infos:
        if ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback:
            continue
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.bind((address[0], 0))
            return True
        except OSError:
            continue
    return False


def find_self(peers: Peers, explicit: str | None = None, local_host: Callable[[str], bool] = is_local) -> str | None:
    """This node's own entry: ``explicit`` (``--peer-self``), ``$GADGETSTORE_PEER_SELF``, the config's
    ``self``, else the one peer whose host is a local address (``local_host``: :func:`is_local`, or
    what a test says this machine's addresses are). None: this node only asks, owns nothing.

    Blocking (name resolution). Loopback hosts never match (every node has loopback), so peers on
    loopback need an explicit self; several peers on local non-loopback addresses are an error.
    """
    named = explicit or os.environ.get(SELF_ENV) or peers.self_url
    if named:
        url = named if "://" in named else f"http://{named}"
        url = url.rstrip("/").lower()
        if url not in peers.urls:
            raise RegistriesConfigError(f"peer self {named!r} is not one of the peer urls")
        return url
    local = [url for url in peers.urls if local_host(urlsplit(url).hostname or "")]
    if len(local) > 1:
        raise RegistriesConfigError(f"several peers are local addresses ({', '.join(local)}); say which one is "
                                    f"this node with peers.self, ${SELF_ENV} or --peer-self")
    return local[0] if local else None
