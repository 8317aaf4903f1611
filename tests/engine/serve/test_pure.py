"""Routing, naming, ranges and the catalog as pure functions: no sockets, no event loop."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.serve.app import parse_listen
from gadgetstore.engine.serve.catalog import ServedCatalog, build_catalog, catalog_of
from gadgetstore.engine.serve.messages import Request, ServerResponse
from gadgetstore.engine.serve.names import NameTable, is_valid_name
from gadgetstore.engine.serve.ranges import ByteRange, Unsatisfiable, parse_range
from gadgetstore.engine.serve.routes import route
from gadgetstore.engine.store import Store
from tests.engine.serve.support import FULL_REPO, REPO, Fixture


@pytest.fixture(scope="module")
def catalog(fixture_store: Fixture) -> ServedCatalog:
    return catalog_of(Store.open(fixture_store.root))


def get(catalog: ServedCatalog, target: str, method: str = "GET", **headers: str) -> ServerResponse:
    return route(Request(method, target, {k.lower().replace("_", "-"): v for k, v in headers.items()}), catalog)


def body(response: ServerResponse) -> Any:
    return json.loads(response.body)


# -- names -------------------------------------------------------------------------------------


def test_name_rule_full_short_ns_and_default_domain() -> None:
    table = NameTable([("ghcr.io", "a/b"), ("example.com", "a/b"), ("quay.io", "c/d"), ("", "plain/x"),
                       ("localhost:5000", "e")])
    assert table.resolve("ghcr.io/a/b") == "ghcr.io/a/b"
    assert table.resolve("a/b") == "ghcr.io/a/b"  # ambiguous: ig's default domain wins
    assert table.resolve("a/b", ns="example.com") == "example.com/a/b"
    assert table.resolve("a/b", ns="nowhere.io") == "ghcr.io/a/b"
    assert table.resolve("c/d") == "quay.io/c/d"
    assert table.resolve("plain/x") == "plain/x"
    assert table.resolve("e") == "localhost:5000/e"
    assert table.resolve("b") is None
    assert "localhost:5000/e" not in table.served_names()  # not a valid URL name
    assert "e" in table.served_names()


def test_ambiguous_short_name_without_default_domain_is_unknown() -> None:
    table = NameTable([("quay.io", "a/b"), ("example.com", "a/b")])
    assert table.resolve("a/b") is None
    assert table.resolve("a/b", ns="quay.io") == "quay.io/a/b"
    assert table.served_names() == ["example.com/a/b", "quay.io/a/b"]


@pytest.mark.parametrize("name", ["a", "a/b", "ghcr.io/x/y", "a-b/c__d", "a.b/c--d"])
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "A/b", "a//b", "/a", "a/", "a/../b", "a:5000/b", "-a", "a" * 256,
                                  "a/b\n", "ünï/b"])
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)


# -- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=500-1499", ByteRange(500, 1499)),
    ("bytes=500-", ByteRange(500, 9999)),
    ("bytes=-500", ByteRange(9500, 9999)),
    ("bytes=2000-50000", ByteRange(2000, 9999)),  # past the end: truncated
    ("bytes=-20000", ByteRange(0, 9999)),
    ("BYTES = 0-0", ByteRange(0, 0)),
    (None, None),
    ("bytes=0-1,5-6", None),  # multiple ranges: the whole blob
    ("items=0-1", None),
    ("bytes=abc", None),
    ("bytes=-", None),
    ("bytes=\u0663-", None),  # ARABIC-INDIC DIGIT THREE: \d and int() take it, HTTP does not
    ("bytes=0-1\n", None),
])
def test_range_parsing(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 10_000) == expected


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=500-0", 10_000), ("bytes=10000-20000", 10_000), ("bytes=10000-", 10_000),
    ("bytes=-0", 10_000), ("bytes=0-", 0), ("bytes=-5", 0),
])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(size=st.integers(0, 5000), first=st.none() | st.integers(0, 6000), last=st.none() | st.integers(0, 6000))
def test_ranges_agree_with_slicing(size: int, first: int | None, last: int | None) -> None:
    """Whatever is served is exactly what Python slicing of the blob gives for that range."""
    blob = bytes(range(256)) * (size // 256 + 1)
    blob = blob[:size]
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    try:
        got = parse_range(header, size)
    except Unsatisfiable:
        assert size == 0 or (first is not None and (first >= size or (last is not None and last < first))) or (
            first is None and last == 0)
        return
    if got is None:
        assert first is None and last is None
        return
    if first is None:
        assert last is not None
        expected = blob[max(0, size - last):]
    else:
        expected = blob[first:] if last is None else blob[first:last + 1]
    assert blob[got.start:got.end + 1] == expected and got.length == len(expected) > 0


# -- listen addresses --------------------------------------------------------------------------


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:5050") == ("127.0.0.1", 5050)
    assert parse_listen(":5050") == (None, 5050)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("5050", "host:", "host:http", "::1:5050", "h:70000", "h:\u0663\u0663", "h:\u00b2", "h:+5"):
        with pytest.raises(ValueError):
            parse_listen(bad)


# -- routes ------------------------------------------------------------------------------------


def test_manifest_by_tag_has_its_own_media_type_and_digest(catalog: ServedCatalog, fixture_store: Fixture) -> None:
    for name in (REPO, FULL_REPO):
        response = get(catalog, f"/v2/{name}/manifests/latest")
        assert response.status == 200
        assert response.header("Content-Type") == mt.OCI_INDEX
        assert response.header("Docker-Content-Digest") == str(fixture_store.index)
        assert Digest.of_bytes(response.body) == fixture_store.index


def test_manifest_without_media_type_field_takes_its_descriptors(catalog: ServedCatalog) -> None:
    desc = catalog.repositories["ghcr.io/other/thing"].tags["1.0"]
    index = json.loads(catalog.documents[desc.digest].data)
    child = index["manifests"][0]["digest"]
    response = get(catalog, f"/v2/other/thing/manifests/{child}")
    assert response.status == 200
    assert "mediaType" not in json.loads(response.body)
    assert response.header("Content-Type") == mt.OCI_MANIFEST


def test_layer_digest_is_not_a_manifest(catalog: ServedCatalog, fixture_store: Fixture) -> None:
    response = get(catalog, f"/v2/{REPO}/manifests/{fixture_store.amd64_layer}")
    assert response.status == 404
    assert body(response)["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_blob_ranges_are_slices_for_the_server(catalog: ServedCatalog, fixture_store: Fixture) -> None:
    path, size = f"/v2/{REPO}/blobs/{fixture_store.amd64_layer}", fixture_store.amd64_layer_size
    whole = get(catalog, path)
    assert whole.status == 200 and whole.blob is not None
    assert (whole.blob.offset, whole.blob.length, whole.blob.size) == (0, size, size)
    part = get(catalog, path, Range="bytes=10-19")
    assert part.status == 206 and part.blob is not None
    assert (part.blob.offset, part.blob.length) == (10, 10)
    assert part.header("Content-Range") == f"bytes 10-19/{size}"
    head = get(catalog, path, "HEAD", Range="bytes=10-19")
    assert head.status == 200  # HEAD ignores Range
    bad = get(catalog, path, Range=f"bytes={size}-")
    assert bad.status == 416 and bad.header("Content-Range") == f"bytes */{size}"


@pytest.mark.parametrize("target", [
    f"/v2/{REPO}/blobs/sha256:abc", f"/v2/{REPO}/blobs/sha256:{'A' * 64}",
    f"/v2/{REPO}/manifests/sha256:..%2F..%2Fetc%2Fpasswd", f"/v2/{REPO}/referrers/md5:{'0' * 32}",
    f"/v2/{REPO}/blobs/sha256%3A{'0' * 63}",
])
def test_invalid_digests(catalog: ServedCatalog, target: str) -> None:
    response = get(catalog, target)
    assert response.status == 400
    assert body(response)["errors"][0]["code"] == "DIGEST_INVALID"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_writes_are_unsupported(catalog: ServedCatalog, method: str) -> None:
    response = get(catalog, f"/v2/{REPO}/blobs/uploads/", method)
    assert response.status == 405
    assert response.header("Allow") == "GET, HEAD"
    assert body(response)["errors"][0]["code"] == "UNSUPPORTED"


def test_unknown_endpoints_and_names(catalog: ServedCatalog) -> None:
    assert get(catalog, "/").status == 404
    assert get(catalog, f"/v2/{REPO}/nothing/here").status == 404
    response = get(catalog, "/v2/Upper/manifests/latest")
    assert (response.status, body(response)["errors"][0]["code"]) == (400, "NAME_INVALID")
    response = get(catalog, "/v2/no/such/manifests/latest")
    assert (response.status, body(response)["errors"][0]["code"]) == (404, "NAME_UNKNOWN")


def test_ns_parameter_selects_the_domain(catalog: ServedCatalog, fixture_store: Fixture) -> None:
    assert get(catalog, f"/v2/{REPO}/manifests/other").status == 404
    response = get(catalog, f"/v2/{REPO}/manifests/other?ns=example.com")
    assert response.header("Docker-Content-Digest") == str(fixture_store.example_index)


def test_tags_pagination_link_keeps_ns(catalog: ServedCatalog, fixture_store: Fixture) -> None:
    response = get(catalog, f"/v2/{REPO}/tags/list?n=2&ns=ghcr.io")
    sig_tag = f"sha256-{fixture_store.index.hex}.sig"
    assert body(response)["tags"] == ["latest", sig_tag]
    link = response.header("Link")
    assert link == f'</v2/{REPO}/tags/list?n=2&last={sig_tag}&ns=ghcr.io>; rel="next"'
    assert get(catalog, f"/v2/{REPO}/tags/list?n=-1").status == 400
    assert get(catalog, f"/v2/{REPO}/tags/list?n=%C2%B2").status == 400  # "²": isdigit, but int() raises


def test_catalog_lists_served_names(catalog: ServedCatalog) -> None:
    names = body(get(catalog, "/v2/_catalog"))["repositories"]
    assert REPO in names and FULL_REPO in names and "other/thing" in names
    page = get(catalog, "/v2/_catalog?n=1")
    assert body(page)["repositories"] == [names[0]] and page.header("Link") is not None


# -- the catalog graph -------------------------------------------------------------------------


def _doc(obj: dict[str, Any]) -> tuple[Descriptor, bytes]:
    data = json.dumps(obj).encode()
    return Descriptor(obj.get("mediaType", mt.OCI_MANIFEST), Digest.of_bytes(data), len(data)), data


def test_signatures_of_signatures_join_the_graph_and_damage_is_reported() -> None:
    layer = Descriptor("application/octet-stream", Digest.of_bytes(b"x"), 1)
    image, image_data = _doc({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "layers": [layer.to_json()]})
    sig, sig_data = _doc({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": "a/sig",
                          "layers": [], "subject": image.to_json()})
    sigsig, sigsig_data = _doc({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": "a/sig2",
                                "layers": [], "subject": sig.to_json()})
    broken = Descriptor(mt.OCI_MANIFEST, Digest.of_bytes(b"gone"), 4)
    blobs = {image.digest: image_data, sig.digest: sig_data, sigsig.digest: sigsig_data}

    def read(desc: Descriptor) -> bytes:
        if desc.digest not in blobs:
            raise GadgetStoreError(f"blob {desc.digest} is missing")
        return blobs[desc.digest]

    catalog = build_catalog({"r.io/a:1": image, "r.io/b:1": broken, "not a ref!": image},
                            [sigsig, sig], read)
    repo = catalog.repositories["r.io/a"]
    assert set(repo.contents) == {image.digest, layer.digest, sig.digest, sigsig.digest}
    assert repo.referrers == {image.digest: (sig.digest,), sig.digest: (sigsig.digest,)}
    assert set(catalog.repositories["r.io/b"].contents) == {broken.digest}
    assert any("missing" in p for p in catalog.problems)
    assert any("not a ref!" in p for p in catalog.problems)
    # an earlier catalog's documents are reused instead of read again
    again = build_catalog({"r.io/a:1": image}, [sig], lambda d: (_ for _ in ()).throw(AssertionError(d)),
                          catalog.documents)
    assert set(again.repositories["r.io/a"].contents) >= {image.digest, sig.digest}
