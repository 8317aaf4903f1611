"""The one retry policy: which failures, how many, how long (on an injected random source and
clock), and the retry loops that use it listing their waits for ``--timeout``."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import DigestMismatch, IntegrityError
from gadgetstore.engine.registry.blobfetch import BlobFetcher
from gadgetstore.engine.registry.client import Session, TransferOptions
from gadgetstore.engine.registry.errors import (
    BadRangeAnswer,
    InvalidHeader,
    NotFoundInRegistry,
    RateLimited,
    RegistryUnavailable,
    TransportError,
)
from gadgetstore.engine.registry.http import BodyTooLarge, PlainHTTPError
from gadgetstore.engine.registry.inflight import InFlight
from gadgetstore.engine.registry.retry import MAX_RETRY_AFTER, RetryPolicy, parse_retry_after
from gadgetstore.engine.store import Store
from tests.support.fakes import FakeServer, Reply

POLICY = RetryPolicy(retries=4, backoff_base=0.5, backoff_max=3.0)


def test_backoff_doubles_up_to_its_cap_and_jitter_takes_up_to_half_off() -> None:
    assert [POLICY.backoff(n, 0.0) for n in range(5)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert POLICY.backoff(0, 0.999999) == pytest.approx(0.5)
    assert POLICY.backoff(10, 0.5) == pytest.approx(3.0 * 0.75)


def test_attempts_give_the_policys_retries_then_stop() -> None:
    draws = iter([0.0, 0.5, 0.0, 0.0, 0.0])
    attempts = POLICY.attempts(lambda: next(draws))
    assert attempts.next_wait() == 0.25
    assert attempts.next_wait() == pytest.approx(0.75)  # 1.0 scaled by 0.5 + 0.5 / 2
    assert attempts.next_wait(retry_after=7.0) == 7.0  # the registry's wait replaces the backoff
    assert attempts.next_wait() == 1.5
    assert attempts.next_wait() is None and attempts.made == 4
    assert RetryPolicy(retries=3).without_retries().attempts().next_wait() is None


@pytest.mark.parametrize(("status", "retried"), [(429, True), (500, True), (502, True), (503, True), (401, False),
                                                 (403, False), (404, False), (400, False), (416, False)])
def test_statuses_worth_asking_again(status: int, retried: bool) -> None:
    attempts = POLICY.attempts(lambda: 0.0)
    assert POLICY.retries_status(status) is retried
    assert (attempts.after_status(status, None) is not None) is retried


@pytest.mark.parametrize(("error", "alone", "refetched"), [
    (TransportError("connection reset"), True, True),
    (TransportError("stalled"), True, True),
    (TransportError("TLS certificate not trusted", retriable=False), False, False),
    (PlainHTTPError("reg:5000"), False, False),
    (BodyTooLarge("too large"), False, False),
    (InvalidHeader("bad Location"), False, False),
    (DigestMismatch("wrong bytes"), False, True),
    (IntegrityError("short body"), False, True),
    (BadRangeAnswer("Range ignored"), False, True),
])
def test_errors_worth_another_try(error: Exception, alone: bool, refetched: bool) -> None:
    """Wrong bytes are worth another try only where the whole item is fetched again."""
    assert RetryPolicy.retries_error(error) is alone
    assert RetryPolicy.retries_error(error, refetch=True) is refetched
    assert (POLICY.attempts().after_error(error, refetch=True) is None) is not refetched


@pytest.mark.parametrize(("method", "idempotent", "retries"), [
    ("GET", False, 4), ("HEAD", False, 4), ("PUT", True, 4),  # a manifest PUT
    ("POST", False, 0), ("PATCH", False, 0), ("PUT", False, 0),  # an upload's: it starts over instead
])
def test_only_requests_that_may_be_sent_twice_are_retried(method: str, idempotent: bool, retries: int) -> None:
    assert POLICY.for_request(method, idempotent).retries == retries


@pytest.mark.parametrize(("error", "restarted"), [
    (RegistryUnavailable("registry error 503"), True),
    (RateLimited("too many requests"), True),
    (TransportError("connection reset"), True),
    (NotFoundInRegistry("blob upload unknown"), False),
    (TransportError("TLS certificate not trusted", retriable=False), False),
])
def test_an_upload_starts_over_after_what_a_request_is_retried_after(error: Exception, restarted: bool) -> None:
    assert RetryPolicy.retries_error(error, restart=True) is restarted
    assert RetryPolicy.retries_error(error) is (isinstance(error, TransportError) and restarted)


def test_retry_after_in_seconds_or_as_a_date_is_capped() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    in_20s = format_datetime(datetime(2030, 1, 1, 12, 0, 20, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(in_20s, now) == 20.0
    assert parse_retry_after(" 3 ", now) == 3.0
    assert parse_retry_after("0.5", now) == 0.5
    assert parse_retry_after("-5", now) == 0.0
    assert parse_retry_after("86400", now) == MAX_RETRY_AFTER
    assert parse_retry_after(format_datetime(datetime(2029, 1, 1, tzinfo=UTC), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


class _Watched(InFlight):
    """Sets ``retrying`` when a wait before a retry is listed."""

    def __init__(self) -> None:
        super().__init__()
        self.retrying = trio.Event()
        self.waits: list[str] = []

    def enter(self, label: str) -> None:
        super().enter(label)
        if label.endswith("(retrying)"):
            self.waits.append(label)
            self.retrying.set()


async def test_a_blob_fetched_again_lists_its_wait(tmp_path: Path) -> None:
    """The registry sends other bytes than the digest names: the blob's wait before its second
    fetch is what a ``--timeout`` would name (the wait is long, so it is still under way)."""
    data = b"x" * 1000
    digest = Digest.of_bytes(data)
    server = FakeServer(lambda req: Reply(200, {"Content-Type": "application/octet-stream"}, b"y" * 1000))
    flight = _Watched()
    options = TransferOptions(insecure_registries=frozenset({server.host}), retries=1, backoff_base=600,
                              backoff_max=600, in_flight=flight)
    try:
        async with Session(options) as session:
            client = await session.client(server.host)
            fetcher = BlobFetcher(Store.open(tmp_path / "s"), client)
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(fetcher.fetch, "a/b", Descriptor("application/octet-stream", digest, 1000))
                    await flight.retrying.wait()
                    nursery.cancel_scope.cancel()
    finally:
        server.close()
    assert flight.waits == [f"blob sha256:{digest.hex[:12]} of {server.host}/a/b (retrying)"]
    assert len(server.requests) == 1
    assert flight.labels() == []
