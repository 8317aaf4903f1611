"""When a transfer counts as stalled (pure: no I/O, the caller passes the clock).

An idle timeout per read restarts with every byte, so a server that sends one byte a second holds
a transfer forever. Instead, each exchange (the wait for the response head, then its body; an
upload's body counts too) has a :class:`RateMeter`: once ``window`` seconds have passed, the bytes
of the trailing ``window`` must average at least ``floor`` bytes per second, else the transfer is
aborted as a connection error (and retried; a ranged download keeps what arrived).

Bytes are counted in ``BUCKETS`` buckets per window, so a meter costs a few small numbers whatever
the rate, and a check is one step on a fast transfer (its newest bucket alone is enough). A byte
counts as arriving at the end of its bucket: a stall is called at most ``window / BUCKETS`` late,
never early. The server is judged only while the client waits on it: a read that starts after the
deadline passed while nobody was reading (the client was busy, say a slow disk) first gets one
bucket's time to find bytes that are already there.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ..humanize import format_duration, format_rate

DEFAULT_FLOOR = 1024.0  # bytes per second
DEFAULT_WINDOW = 30.0  # seconds
BUCKETS = 16


@dataclass(frozen=True)
class StallPolicy:
    """The floor (bytes/s, averaged over ``window`` seconds) below which a transfer is stalled;
    a floor of 0 turns the check off."""

    floor: float = DEFAULT_FLOOR
    window: float = DEFAULT_WINDOW

    @property
    def enabled(self) -> bool:
        return self.floor > 0

    def describe(self) -> str:
        return f"under {format_rate(self.floor)} for {format_duration(self.window)}"


class RateMeter:
    """Bytes moved by one exchange over the trailing window; :meth:`deadline` says when, with no
    more bytes, it becomes stalled.

    ``grace`` seconds are added before the first judgement: a peer asked to hold a request until
    it has the blob (``wait=``) is not stalled while it holds it.
    """

    def __init__(self, policy: StallPolicy, start: float, grace: float = 0.0) -> None:
        self._needed = policy.floor * policy.window
        self._window = policy.window
        self._width = policy.window / BUCKETS
        self._start = start
        self._judged_from = start + max(0.0, grace) + policy.window
        self._buckets: deque[list[int]] = deque()  # [bucket index, bytes], oldest first
        self._last = start  # when bytes last came (or the exchange began)
        self.total = 0

    @property
    def buckets(self) -> int:
        """How many buckets of bytes it keeps: those within the window, so a long transfer's meter
        stays as small as a short one's."""
        return len(self._buckets)

    def _end(self, index: int) -> float:
        return self._start + (index + 1) * self._width

    def add(self, now: float, count: int) -> None:
        if count <= 0:
            return
        self.total += count
        self._last = max(self._last, now)
        index = max(0, math.floor((now - self._start) / self._width))
        if self._buckets and self._buckets[-1][0] >= index:
            self._buckets[-1][1] += count
            return
        self._buckets.append([index, count])
        while self._end(self._buckets[0][0]) + self._window <= now:
            self._buckets.popleft()  # out of the window for good (the newest one never is)

    def deadline(self) -> float:
        """The time from which the transfer is stalled unless more bytes come first."""
        if self._needed <= 0:
            return math.inf
        seen = 0
        for index, count in reversed(self._buckets):
            seen += count
            if seen >= self._needed:  # enough bytes until this bucket leaves the window
                return max(self._judged_from, self._end(index) + self._window)
        return self._judged_from

    def stalled(self, now: float) -> bool:
        return now >= self.deadline()

    def wait_deadline(self, now: float) -> float:
        """How long a read or write that starts at ``now`` may wait: :meth:`deadline`, unless that
        passed since the last bytes while no one waited (then one bucket from now)."""
        deadline = self.deadline()
        if self._last < deadline <= now:
            return now + self._width
        return deadline
