"""Header values that are not visible ASCII, or do not parse, fail their image with one line; the
other images of the batch go on. Registry text in an error is one escaped line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.errors import AuthError, InvalidHeader, RegistryError
from gadgetstore.engine.registry.paging import next_link
from gadgetstore.engine.registry.pull import PullResult, pull_images
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.cli import run_in_store
from tests.support.fakes import FakeServer, Reply, Request
from tests.support.graphs import GraphRegistry, Hostile, diamond_chain

# (header, the status it comes with, the path of image "a" it answers, the value around the bad byte)
CASES = {
    "Location": (302, "/v2/a/manifests/v1", "/v2/a/manifests/v{}"),
    "WWW-Authenticate": (401, "/v2/a/manifests/v1", 'Bearer realm="http://127.0.0.1:1/token{}"'),
    "Link": (200, "/v2/a/manifests/v1", '</v2/a/tags/list?n=1{}>; rel="next"'),
    "Docker-Content-Digest": (200, "/v2/a/manifests/v1", "sha256:{}"),
    "Content-Range": (206, "/v2/a/blobs/", "bytes 0-1{}/2000"),
    "Retry-After": (503, "/v2/a/manifests/v1", "1{}"),
}
BAD = {"control": "\x01", "delete": "\x7f", "latin-1": "\xe9"}


def answering(status: int, path: str, headers: dict[str, str], reason: str | None = None,
              body: bytes = b"") -> Hostile:
    def hostile(req: Request) -> Reply | None:
        return Reply(status, headers, body, reason=reason) if req.path.startswith(path) else None

    return hostile


async def pull_pair(tmp_path: Path, registry: GraphRegistry) -> tuple[list[PullResult], Store]:
    """Images ``a`` and ``b`` in one batch (retries allowed: a refused header must not be retried)."""
    store = Store.open(tmp_path / "store")
    options = TransferOptions(plain_http=frozenset({registry.host}), backoff_base=0.01, backoff_max=0.02,
                              range_threshold=1000, chunk_size=1000)
    return await pull_images(store, [registry.ref("a"), registry.ref("b")], options), store


def serve_pair(hostile: Hostile) -> GraphRegistry:
    return GraphRegistry({"a": diamond_chain(1, "a"), "b": diamond_chain(1, "b")}, hostile)


def assert_only_b(results: list[PullResult], store: Store, registry: GraphRegistry) -> str:
    """``a`` failed with one line, ``b`` is pulled and tagged alone; the message of ``a``."""
    assert results[1].error is None, results[1].error
    assert store.tags() == [str(normalize(registry.ref("b")))]
    message = str(results[0].error)
    assert "\n" not in message and message.isprintable() and message.isascii(), message
    return message


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("header", sorted(CASES))
async def test_header_not_visible_ascii_fails_only_its_image(tmp_path: Path, header: str, bad: str) -> None:
    status, path, template = CASES[header]
    registry = serve_pair(answering(status, path, {header: template.format(BAD[bad])}))
    try:
        results, store = await pull_pair(tmp_path, registry)
    finally:
        registry.close()
    assert isinstance(results[0].error, InvalidHeader), results[0].error
    message = assert_only_b(results, store, registry)
    assert message.startswith(f"http://{registry.host}: invalid {header} header ")
    assert ascii(BAD[bad])[1:-1] in message  # escaped, e.g. \xe9
    asked = Counter(r.path for r in registry.requests if r.path.startswith(path))
    assert max(asked.values()) == 1  # never retried


@pytest.mark.parametrize(("header", "status", "value", "error", "expected"), [
    ("Location", 302, "http://[::1/v2/a/manifests/v1", InvalidHeader,
     "Location header 'http://[::1/v2/a/manifests/v1' is not a usable http(s) URL"),
    ("Location", 307, "ftp://example.com/a", InvalidHeader, "Location header 'ftp://example.com/a' is not a usable"),
    ("Location", 302, "/v2/a/manifests/v 1", InvalidHeader, "Location header '/v2/a/manifests/v 1' is not a usable"),
    ("WWW-Authenticate", 401, 'Bearer realm="http://[::1/token"', AuthError,
     "refusing token realm 'http://[::1/token': not an http(s) URL"),
    ("WWW-Authenticate", 401, 'Bearer realm="http://127.0.0.1:99999/token"', AuthError, "not an http(s) URL"),
])
async def test_header_that_does_not_parse_fails_only_its_image(tmp_path: Path, header: str, status: int, value: str,
                                                               error: type[RegistryError], expected: str) -> None:
    registry = serve_pair(answering(status, "/v2/a/manifests/v1", {header: value}))
    try:
        results, store = await pull_pair(tmp_path, registry)
    finally:
        registry.close()
    assert isinstance(results[0].error, error), results[0].error
    assert expected in assert_only_b(results, store, registry)


def test_next_page_link_that_does_not_parse_is_refused() -> None:
    with pytest.raises(InvalidHeader, match=r"Link header 'http://\[::1/v2/x/tags/list' is not a usable"):
        next_link(['<http://[::1/v2/x/tags/list>; rel="next"'], "http://127.0.0.1:5000/v2/x/tags/list")


async def test_registry_error_text_is_one_escaped_line(tmp_path: Path) -> None:
    body = b'{"errors":[{"code":"DENIED","message":"no\\nsuch\\u001b[31m thing"}]}'
    registry = serve_pair(answering(400, "/v2/a/manifests/v1", {"Content-Type": "application/json"},
                                    reason="Bad\x01Request", body=body))
    try:
        results, store = await pull_pair(tmp_path, registry)
    finally:
        registry.close()
    message = assert_only_b(results, store, registry)
    assert message.endswith("unexpected status 400 Bad\\x01Request: denied: no such\\x1b[31m thing")


def test_cli_bulk_pull_reports_the_bad_header_in_one_line(tmp_path: Path) -> None:
    registry = serve_pair(answering(302, "/v2/a/manifests/v1", {"Location": "/v2/a/manifests/v\xe9"}))
    try:
        code, _, err = run_in_store(tmp_path / "store", "image", "pull", registry.ref("a"), registry.ref("b"),
                                    "--insecure-registries", registry.host)
    finally:
        registry.close()
    assert code == 1
    assert f"Error: pulling {registry.ref('a')}: http://{registry.host}: invalid Location header " \
           "'/v2/a/manifests/v\\xe9': a header value must be visible ASCII\n" in err
    assert err.count("Successfully pulled") == 1
    assert Store.open(tmp_path / "store").tags() == [str(normalize(registry.ref("b")))]


@pytest.mark.parametrize(("location", "expected"), [
    ("/v2/a/blobs/uploads/\xe9", "invalid Location header '/v2/a/blobs/uploads/\\xe9'"),
    ("http://[::1/v2/a/blobs/uploads/u1", "Location header 'http://[::1/v2/a/blobs/uploads/u1' is not a usable"),
])
async def test_push_with_an_upload_location_that_is_not_usable_fails_in_one_line(store: Store, location: str,
                                                                                  expected: str) -> None:
    def registry_side(req: Request) -> Reply:
        if req.method == "HEAD":
            return Reply(404)
        return Reply(202, {"Location": location}) if req.method == "POST" else Reply(201)

    registry = FakeServer(registry_side)
    ref = f"{registry.host}/a:v1"
    diamond_chain(1).store_as(store, str(normalize(ref)))
    try:
        with pytest.raises(InvalidHeader) as caught:
            await push_image(store, ref, TransferOptions(insecure_registries=frozenset({registry.host})))
    finally:
        registry.close()
    assert str(caught.value) == f"http://{registry.host}: {expected}" + (
        ": a header value must be visible ASCII" if "invalid" in expected else " http(s) URL")
    assert not any(r.method == "PUT" for r in registry.requests)
