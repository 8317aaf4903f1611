"""What a ``--timeout`` names: request labels, the one-line description, and the pool's bookkeeping."""

from __future__ import annotations

import pytest
import trio

from gadgetstore.engine.registry.http import Pool
from gadgetstore.engine.registry.inflight import InFlight, request_label
from tests.support import httpserver
from tests.support.fakes import FakeServer, Reply
from tests.support.stalling import SlowServer

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(("method", "url", "label"), [
    ("GET", f"https://ghcr.io/v2/inspektor-gadget/gadget/trace_open/blobs/sha256:{HEX}",
     "blob sha256:0123456789ab of ghcr.io/inspektor-gadget/gadget/trace_open"),
    ("GET", "http://127.0.0.1:5000/v2/demo/manifests/v1", "manifest 127.0.0.1:5000/demo:v1"),
    ("HEAD", f"http://127.0.0.1:5000/v2/demo/manifests/sha256:{HEX}",
     "manifest 127.0.0.1:5000/demo@sha256:0123456789ab"),
    ("PATCH", "http://reg:5000/v2/a/b/blobs/uploads/5f1c?_state=xyz", "upload to reg:5000/a/b"),
    ("POST", "http://reg:5000/v2/a/b/blobs/uploads/", "upload to reg:5000/a/b"),
    ("GET", "http://reg:5000/v2/a/tags/list?n=100", "tag list of reg:5000/a"),
    ("GET", f"http://reg:5000/v2/a/referrers/sha256:{HEX}", "referrers of reg:5000/a@sha256:0123456789ab"),
    ("GET", "https://reg/v2/", "GET reg/v2/"),
    ("GET", "https://auth.example/token?account=alice&scope=repository:a:pull", "GET auth.example/token"),
])
def test_request_labels_name_what_is_fetched_and_never_the_query(method: str, url: str, label: str) -> None:
    assert request_label(method, url) == label


def test_description_is_one_line_oldest_first_with_the_rest_counted() -> None:
    flight = InFlight()
    assert flight.describe() == ""
    labels = [f"blob sha256:{i:012x} of 127.0.0.1:5000/some/long/repository/name" for i in range(20)]
    for label in labels:
        flight.enter(label)
    flight.enter(labels[0])  # two Range requests of one blob are one entry
    text = flight.describe(width=200)
    assert "\n" not in text and len(text) <= 200 + len(" and 20 more")
    assert text.startswith(labels[0] + ", " + labels[1]) and text.endswith(" more")
    shown = text.count("blob ")
    assert text.endswith(f" and {20 - shown} more")
    flight.leave(labels[0])
    assert flight.labels()[0] == labels[0]  # still one request of it under way
    flight.leave(labels[0])
    with flight.track("manifest x:y"):
        assert "manifest x:y" in flight.labels()
    assert labels[0] not in flight.labels() and "manifest x:y" not in flight.labels()


async def test_the_pool_lists_a_request_until_its_body_is_done() -> None:
    flight = InFlight()
    pool = Pool(httpserver.plain_http_only, read_timeout=5, in_flight=flight)
    echo = FakeServer(lambda req: Reply(200, body=b"x" * 1000))
    silent = SlowServer("silent")
    try:
        url = f"http://{echo.host}/v2/demo/blobs/sha256:{HEX}"
        resp = await pool.request("GET", url)
        assert flight.labels() == [f"blob sha256:0123456789ab of {echo.host}/demo"]  # head in, body not yet
        await resp.read(10_000)
        assert flight.labels() == []

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.request, "GET", f"http://{silent.host}/v2/demo/manifests/v1")
            await trio.to_thread.run_sync(silent.arrived.wait)
            assert flight.describe() == f"manifest {silent.host}/demo:v1"  # waiting for the head
            nursery.cancel_scope.cancel()
        assert flight.labels() == []  # a cancelled request is no longer listed
    finally:
        await pool.aclose()
        echo.close()
        silent.close()
