"""When a registry operation is tried again, and after how long (pure: the caller sleeps).

One policy for every loop that retries: a request (its head, and a small body read whole), a blob
fetched again as a whole, one Range chunk continued from where it broke, a blob upload started over. Each loop
asks its :class:`Attempts` for the next wait and gives up when there is none.

- **Which failures.** A :class:`~.errors.TransportError` marked retriable: a refused or reset
  connection, a read timeout, a stalled exchange (the floor is the pool's, :mod:`.stall`; a stall
  surfaces here as such an error). Answers 429 and 5xx. Wrong bytes (a digest or size mismatch)
  and broken Range answers only where the whole item is fetched again. Never a TLS or certificate
  error, a header that is not visible ASCII, a body over its cap, or any other status: the next
  try would get the same.
- **Which requests.** A request is sent again by the client only when sending it twice leaves the
  registry as sending it once: GET and HEAD (:data:`IDEMPOTENT_METHODS`), and a request its caller
  declares idempotent: a manifest PUT (HTTP's PUT is idempotent, and the registry stores the same
  content-addressed bytes under the same reference again) and a token request (it changes nothing at
  the registry). An upload's POST, PATCH and closing PUT are not: the registry may have taken the
  first one (a timeout, a 5xx after the chunk was written), and the same chunk again is refused, so
  the pusher starts the whole upload over instead (``restart``).
- **How many.** ``retries`` after the first try, counted per operation.
- **How long.** Exponential backoff from ``backoff_base`` doubling up to ``backoff_max``, scaled by
  a random factor in [0.5, 1) so that the many blobs of a bulk pull that failed together do not
  come back together; a registry's ``Retry-After`` (seconds or an HTTP date) replaces it, capped
  at :data:`MAX_RETRY_AFTER`.

A command's ``--timeout`` is not a rule here: it is one cancel scope around the whole command
(``cli/deadline.py``), which cuts a wait as it cuts a transfer. Each wait is listed in the
session's :class:`~.inflight.InFlight` while it lasts, so the timeout names the retry it cut.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime

from ..errors import IntegrityError
from .errors import BadRangeAnswer, RateLimited, RegistryUnavailable, TransportError

MAX_RETRY_AFTER = 60.0  # seconds: a registry asking for longer is waited for this long
RETRY_STATUSES = frozenset({429})  # and every 5xx
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD"})  # sent again by the client; see the module docstring


@dataclass(frozen=True)
class RetryPolicy:
    """How many times an operation is tried again, and how long to wait before each try."""

    retries: int = 4
    backoff_base: float = 0.2
    backoff_max: float = 8.0

    def without_retries(self) -> RetryPolicy:
        return replace(self, retries=0)

    def for_request(self, method: str, idempotent: bool = False) -> RetryPolicy:
        """The policy of one request: this one when sending it twice is harmless (``method`` is GET
        or HEAD, or the caller says it is ``idempotent``), else none: its operation starts over."""
        return self if idempotent or method in IDEMPOTENT_METHODS else self.without_retries()

    @staticmethod
    def retries_status(status: int) -> bool:
        """Whether an answer with ``status`` is worth asking again: too many requests, or a server error."""
        return status in RETRY_STATUSES or status >= 500

    @staticmethod
    def retries_error(err: BaseException, refetch: bool = False, restart: bool = False) -> bool:
        """Whether ``err`` is worth another try; ``refetch``: the whole item is fetched again, so
        wrong bytes (a digest or size mismatch) and a broken Range answer are too; ``restart``: an
        operation of requests that are not sent again (an upload) starts over, so an answer its
        request ended in that a request would be asked again after (429, 5xx) is too."""
        if isinstance(err, TransportError):
            return err.retriable
        if restart and isinstance(err, RateLimited | RegistryUnavailable):
            return True
        return refetch and isinstance(err, IntegrityError | BadRangeAnswer)

    def backoff(self, retry: int, jitter: float) -> float:
        """Seconds before retry number ``retry`` (0 first); ``jitter`` in [0, 1) picks within [½, 1) of it."""
        return min(self.backoff_max, self.backoff_base * 2**retry) * (0.5 + jitter / 2)

    def attempts(self, rand: Callable[[], float] = random.random) -> Attempts:
        """The retry count of one operation, starting now."""
        return Attempts(self, rand)


class Attempts:
    """One operation's retries: :meth:`next_wait` until it says to give up."""

    def __init__(self, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self.made = 0  # retries granted so far
        self._rand = rand

    def next_wait(self, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next try (``retry_after``, the registry's own, when it gave
        one), or None when the retries are spent."""
        if self.made >= self.policy.retries:
            return None
        wait = retry_after if retry_after is not None else self.policy.backoff(self.made, self._rand())
        self.made += 1
        return wait

    def after_error(self, err: BaseException, refetch: bool = False, restart: bool = False) -> float | None:
        """The wait before trying again after ``err``; None: give up and raise it."""
        return self.next_wait() if self.policy.retries_error(err, refetch, restart) else None

    def after_status(self, status: int, retry_after: float | None) -> float | None:
        """The wait before asking again after an answer with ``status``; None: that answer stands."""
        return self.next_wait(retry_after) if self.policy.retries_status(status) else None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (epoch seconds), within [0,
    :data:`MAX_RETRY_AFTER`]; None when absent or unreadable (then the backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))
