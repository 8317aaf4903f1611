"""Which connections stay open, so that idle or slow clients cannot lock others out.

A connection waiting for a request head (an idle keep-alive one, or one whose head is still
arriving) holds no request slot; it only counts against ``max_open``. When a connection arrives
while all of them are taken, the one idle longest is closed to make room. A slow-loris client is
idle from its accept on, so it goes first. When none is idle, every open connection has a request,
and accepting waits: the kernel's listen queue holds the rest.

Each client address may have at most ``per_client`` connections open (0: no limit). Past that, the
client's own longest-idle connection makes room; when it has none idle, the new connection is
closed at once. Loopback clients are not limited unless ``limit_loopback``: on a node, ig,
containerd and the peers of a single-host fleet all connect from 127.0.0.1 and ::1, and the
global bound still holds for them.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

import trio


@dataclass(eq=False)
class Tracked:
    """One open connection: its client address and, while it waits for a head, the scope of that wait."""

    client: str
    accepted: float
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    evicted: bool = False
    released: bool = False


def client_of(address: object) -> str:
    """The client part of a peer address (an IPv4-mapped IPv6 address counts as its IPv4 one)."""
    host = address[0] if isinstance(address, tuple) else str(address)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def is_loopback(client: str) -> bool:
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False


class ConnectionTable:
    def __init__(self, max_open: int, per_client: int = 0, limit_loopback: bool = False) -> None:
        self.max_open = max_open
        self.per_client = per_client
        self.limit_loopback = limit_loopback
        self.open = 0
        self._by_client: Counter[str] = Counter()
        self._idle: dict[Tracked, None] = {}  # in the order they went idle: the longest idle first
        self._changed = trio.Event()

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def connections_of(self, client: str) -> int:
        return self._by_client[client]

    async def wait_for_room(self) -> None:
        """Return once a new connection can be taken: a free place, or an idle connection to close."""
        while self.open >= self.max_open and not self._idle:
            if self._changed.is_set():
                self._changed = trio.Event()
            await self._changed.wait()

    def admit(self, client: str) -> Tracked | None:
        """Count a just-accepted connection (idle until its first head), closing an idle one if needed.

        None: its client is at its limit with nothing idle, and the connection is to be refused.
        """
        if self._limited(client) and self._by_client[client] >= self.per_client:
            own = next((t for t in self._idle if t.client == client), None)
            if own is None:
                return None
            self._evict(own)
        elif self.open >= self.max_open and self._idle:
            self._evict(next(iter(self._idle)))
        tracked = Tracked(client, trio.current_time())
        self.open += 1
        self._by_client[client] += 1
        self._idle[tracked] = None
        return tracked

    def idle(self, tracked: Tracked) -> trio.CancelScope:
        """The scope to wait for the next head in; cancelled when the connection is closed to make room."""
        if tracked not in self._idle and not tracked.released:
            tracked.scope = trio.CancelScope()
            self._idle[tracked] = None
            self._changed.set()
        return tracked.scope

    def busy(self, tracked: Tracked) -> None:
        """A head arrived: the connection is no longer one to close for room."""
        self._idle.pop(tracked, None)

    def release(self, tracked: Tracked) -> None:
        if tracked.released:
            return
        tracked.released = True
        self.open -= 1
        self._by_client[tracked.client] -= 1
        if not self._by_client[tracked.client]:
            del self._by_client[tracked.client]
        self._idle.pop(tracked, None)
        self._changed.set()

    def close_idle(self) -> None:
        """Shutdown: every idle connection goes at once."""
        for tracked in list(self._idle):
            self._evict(tracked)

    def _limited(self, client: str) -> bool:
        return self.per_client > 0 and (self.limit_loopback or not is_loopback(client))

    def _evict(self, tracked: Tracked) -> None:
        tracked.evicted = True
        tracked.scope.cancel()
        self.release(tracked)
