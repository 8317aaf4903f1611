"""The distribution-spec pull and content-discovery cases, against a real server over TCP.

Restated from the spec's endpoint table and the conformance suite's cases (ping, pull by tag and
digest with GET and HEAD, Range, unknown names/manifests/blobs, tag listing with pagination,
referrers with and without a filter) plus the read-only answer to every push method.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from urllib.parse import quote

import pytest

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.digest import Digest
from tests.engine.serve.support import (
    EXTRA_TAGS,
    FULL_REPO,
    REPO,
    SBOM_CONFIG_TYPE,
    SIGNATURE_TYPE,
    Fixture,
    Reply,
    RunningServer,
    send,
)

MISSING = Digest.of_bytes(b"not in the store")


def check_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.error_codes == [code]


def layer_bytes(server: RunningServer, fixture_store: Fixture) -> bytes:
    reply = server.request("GET", f"/v2/{REPO}/blobs/{fixture_store.amd64_layer}")
    assert reply.status == 200
    return reply.body


# -- ping --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_ping(server: RunningServer, method: str) -> None:
    reply = server.request(method, "/v2/")
    assert reply.status == 200
    assert reply.headers["Docker-Distribution-API-Version"] == "registry/2.0"


# -- manifests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [REPO, FULL_REPO])
@pytest.mark.parametrize("ref", ["latest", "{index}"])
def test_get_index_by_tag_and_digest(server: RunningServer, fixture_store: Fixture, name: str, ref: str) -> None:
    reply = server.request("GET", f"/v2/{name}/manifests/{fixture_store.fill(ref)}", {"Accept": mt.OCI_INDEX})
    assert reply.status == 200
    assert reply.headers["Content-Type"] == mt.OCI_INDEX
    assert reply.headers["Docker-Content-Digest"] == str(fixture_store.index)
    assert int(reply.headers["Content-Length"]) == len(reply.body)
    assert Digest.of_bytes(reply.body) == fixture_store.index
    assert reply.json()["mediaType"] == mt.OCI_INDEX


def test_get_platform_manifest_by_digest(server: RunningServer, fixture_store: Fixture) -> None:
    reply = server.request("GET", f"/v2/{REPO}/manifests/{fixture_store.amd64}")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == mt.OCI_MANIFEST
    assert Digest.of_bytes(reply.body) == fixture_store.amd64


@pytest.mark.parametrize("ref", ["latest", "{amd64}"])
def test_head_manifest(server: RunningServer, fixture_store: Fixture, ref: str) -> None:
    ref = fixture_store.fill(ref)
    get = server.request("GET", f"/v2/{REPO}/manifests/{ref}")
    head = server.request("HEAD", f"/v2/{REPO}/manifests/{ref}")
    assert head.status == 200 and head.body == b""
    for header in ("Content-Type", "Content-Length", "Docker-Content-Digest"):
        assert head.headers[header] == get.headers[header]


def test_signature_tag_is_a_tag_of_its_subjects_repository(server: RunningServer, fixture_store: Fixture) -> None:
    reply = server.request("GET", f"/v2/{REPO}/manifests/{fixture_store.sig_tag}")
    assert reply.status == 200
    assert reply.headers["Docker-Content-Digest"] == str(fixture_store.cosign)
    other = server.request("GET", f"/v2/other/thing/manifests/{fixture_store.sig_tag}")
    check_error(other, 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("ref", ["nosuchtag", str(MISSING)])
def test_unknown_manifest(server: RunningServer, ref: str) -> None:
    check_error(server.request("GET", f"/v2/{REPO}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
    head = server.request("HEAD", f"/v2/{REPO}/manifests/{ref}")
    assert head.status == 404 and head.body == b""


def test_manifest_of_another_repository_is_unknown(server: RunningServer, fixture_store: Fixture) -> None:
    check_error(server.request("GET", f"/v2/other/thing/manifests/{fixture_store.index}"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("ref", ["sha256:totallywrong", f"sha256:{'0' * 63}", f"sha384:{'0' * 96}"])
def test_invalid_digest_format(server: RunningServer, ref: str) -> None:
    check_error(server.request("GET", f"/v2/{REPO}/manifests/{ref}"), 400, "DIGEST_INVALID")
    check_error(server.request("GET", f"/v2/{REPO}/blobs/{ref}"), 400, "DIGEST_INVALID")


@pytest.mark.parametrize("path", ["manifests/latest", "blobs/{amd64_layer}", "tags/list", "referrers/{index}"])
def test_unknown_name(server: RunningServer, fixture_store: Fixture, path: str) -> None:
    check_error(server.request("GET", f"/v2/no/such/repo/{fixture_store.fill(path)}"), 404, "NAME_UNKNOWN")


# -- blobs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [REPO, FULL_REPO])
def test_get_blob(server: RunningServer, fixture_store: Fixture, name: str) -> None:
    layer = fixture_store.amd64_layer
    reply = server.request("GET", f"/v2/{name}/blobs/{layer}")
    assert reply.status == 200
    assert len(reply.body) == fixture_store.amd64_layer_size == int(reply.headers["Content-Length"])
    assert Digest.of_bytes(reply.body) == layer
    assert reply.headers["Docker-Content-Digest"] == str(layer)
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert reply.headers["Accept-Ranges"] == "bytes"


def test_head_blob(server: RunningServer, fixture_store: Fixture) -> None:
    reply = server.request("HEAD", f"/v2/{REPO}/blobs/{fixture_store.amd64_layer}")
    assert reply.status == 200 and reply.body == b""
    assert int(reply.headers["Content-Length"]) == fixture_store.amd64_layer_size
    assert reply.headers["Docker-Content-Digest"] == str(fixture_store.amd64_layer)


def test_manifest_is_also_a_blob(server: RunningServer, fixture_store: Fixture) -> None:
    reply = server.request("GET", f"/v2/{REPO}/blobs/{fixture_store.index}")
    assert reply.status == 200 and Digest.of_bytes(reply.body) == fixture_store.index


def test_empty_blob(server: RunningServer) -> None:
    empty = Digest.of_bytes(b"")
    reply = server.request("GET", f"/v2/{REPO}/blobs/{empty}")
    assert (reply.status, reply.body, reply.headers["Content-Length"]) == (200, b"", "0")
    assert server.request("GET", f"/v2/{REPO}/blobs/{empty}", {"Range": "bytes=0-"}).status == 416


def test_unknown_blob(server: RunningServer) -> None:
    check_error(server.request("GET", f"/v2/{REPO}/blobs/{MISSING}"), 404, "BLOB_UNKNOWN")
    head = server.request("HEAD", f"/v2/{REPO}/blobs/{MISSING}")
    assert head.status == 404 and head.body == b""


def test_blob_of_another_repository_is_unknown(server: RunningServer, fixture_store: Fixture) -> None:
    assert server.request("GET", f"/v2/other/thing/blobs/{fixture_store.other_layer}").status == 200
    check_error(server.request("GET", f"/v2/{REPO}/blobs/{fixture_store.other_layer}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("case", [
    lambda size: ("bytes=500-1499", 500, 1499),
    lambda size: ("bytes=500-", 500, size - 1),
    lambda size: ("bytes=-500", size - 500, size - 1),
    lambda size: (f"bytes={size - 1000}-{size + 5000}", size - 1000, size - 1),
], ids=["closed", "open", "suffix", "past-the-end"])
def test_range_requests(server: RunningServer, fixture_store: Fixture,
                        case: Callable[[int], tuple[str, int, int]]) -> None:
    size = fixture_store.amd64_layer_size
    header, start, end = case(size)
    assert size > 1500, "every range lies inside the layer"
    whole = layer_bytes(server, fixture_store)
    reply = server.request("GET", f"/v2/{REPO}/blobs/{fixture_store.amd64_layer}", {"Range": header})
    assert reply.status == 206
    assert reply.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert int(reply.headers["Content-Length"]) == end - start + 1
    assert reply.body == whole[start:end + 1]


@pytest.mark.parametrize("header", [lambda size: "bytes=500-0", lambda size: f"bytes={size}-{size + 100}"],
                         ids=["backwards", "past-the-end"])
def test_unsatisfiable_range(server: RunningServer, fixture_store: Fixture, header: Callable[[int], str]) -> None:
    size = fixture_store.amd64_layer_size
    reply = server.request("GET", f"/v2/{REPO}/blobs/{fixture_store.amd64_layer}", {"Range": header(size)})
    assert reply.status == 416
    assert reply.headers["Content-Range"] == f"bytes */{size}"


# -- tags --------------------------------------------------------------------------------------


def all_tags(fixture_store: Fixture) -> list[str]:
    return sorted(["latest", fixture_store.sig_tag, *EXTRA_TAGS])


@pytest.mark.parametrize("name", [REPO, FULL_REPO])
def test_tags_list(server: RunningServer, fixture_store: Fixture, name: str) -> None:
    reply = server.request("GET", f"/v2/{name}/tags/list")
    assert reply.status == 200
    assert reply.json() == {"name": name, "tags": all_tags(fixture_store)}
    assert "Link" not in reply.headers


@pytest.mark.parametrize("n", [1, 2, 3, 100])
def test_tags_pagination_follows_links(server: RunningServer, fixture_store: Fixture, n: int) -> None:
    seen: list[str] = []
    path: str | None = f"/v2/{REPO}/tags/list?n={n}"
    pages = 0
    while path is not None:
        reply = server.request("GET", path)
        assert reply.status == 200
        page = reply.json()["tags"]
        assert 0 < len(page) <= n
        seen += page
        pages += 1
        link = reply.headers.get("Link")
        match = re.fullmatch(r'<([^>]+)>; rel="next"', link) if link else None
        path = match.group(1) if match else None
    assert seen == all_tags(fixture_store)
    assert pages == -(-len(seen) // n)


def test_tags_last_and_zero(server: RunningServer, fixture_store: Fixture) -> None:
    tags = all_tags(fixture_store)
    reply = server.request("GET", f"/v2/{REPO}/tags/list?n=2&last={quote(tags[1])}")
    assert reply.json()["tags"] == tags[2:4]
    reply = server.request("GET", f"/v2/{REPO}/tags/list?last=v4")
    assert reply.json()["tags"] == ["v5"]
    reply = server.request("GET", f"/v2/{REPO}/tags/list?n=0")
    assert reply.json()["tags"] == [] and "Link" not in reply.headers


# -- referrers ---------------------------------------------------------------------------------


def test_referrers(server: RunningServer, fixture_store: Fixture) -> None:
    reply = server.request("GET", f"/v2/{REPO}/referrers/{fixture_store.index}")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == mt.OCI_INDEX
    assert "OCI-Filters-Applied" not in reply.headers
    index = reply.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == mt.OCI_INDEX
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert set(by_digest) == {str(fixture_store.signature), str(fixture_store.sbom)}
    sig = by_digest[str(fixture_store.signature)]
    assert sig["artifactType"] == SIGNATURE_TYPE and sig["mediaType"] == mt.OCI_MANIFEST
    assert sig["annotations"] == {"org.example.signer": "test"}
    assert by_digest[str(fixture_store.sbom)]["artifactType"] == SBOM_CONFIG_TYPE
    for desc in index["manifests"]:  # each descriptor is true to the manifest it names
        manifest = server.request("GET", f"/v2/{REPO}/manifests/{desc['digest']}")
        assert manifest.status == 200 and len(manifest.body) == desc["size"]
        assert hashlib.sha256(manifest.body).hexdigest() == desc["digest"].split(":")[1]


def test_referrers_filtered(server: RunningServer, fixture_store: Fixture) -> None:
    filtered = f"/v2/{REPO}/referrers/{fixture_store.index}?artifactType="
    reply = server.request("GET", filtered + quote(SIGNATURE_TYPE, safe=""))
    assert reply.status == 200
    assert reply.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in reply.json()["manifests"]] == [str(fixture_store.signature)]
    reply = server.request("GET", filtered + "application/none")
    assert reply.headers["OCI-Filters-Applied"] == "artifactType"
    assert reply.json()["manifests"] == []


def test_referrers_of_unknown_digest_is_an_empty_index(server: RunningServer) -> None:
    reply = server.request("GET", f"/v2/{REPO}/referrers/{MISSING}")
    assert reply.status == 200
    assert reply.json() == {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    check_error(server.request("GET", f"/v2/{REPO}/referrers/sha256:nope"), 400, "DIGEST_INVALID")


# -- push is rejected --------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", f"/v2/{REPO}/blobs/uploads/", None),
    ("POST", f"/v2/{REPO}/blobs/uploads/?digest={MISSING}", b"not in the store"),
    ("PATCH", f"/v2/{REPO}/blobs/uploads/some-session", b"chunk"),
    ("PUT", f"/v2/{REPO}/blobs/uploads/some-session?digest={MISSING}", b""),
    ("PUT", f"/v2/{REPO}/manifests/latest", b'{"schemaVersion":2}'),
    ("DELETE", f"/v2/{REPO}/manifests/{{index}}", None),
    ("DELETE", f"/v2/{REPO}/blobs/{{amd64_layer}}", None),
])
def test_push_and_delete_are_unsupported(
    server: RunningServer, fixture_store: Fixture, method: str, path: str, body: bytes | None
) -> None:
    conn = server.connection()
    try:
        headers = {"Content-Type": "application/octet-stream"}
        check_error(send(conn, method, fixture_store.fill(path), headers, body), 405, "UNSUPPORTED")
        # the small body was read, so the connection stays usable
        assert send(conn, "GET", f"/v2/{REPO}/manifests/latest").status == 200
    finally:
        conn.close()
    assert server.request("GET", f"/v2/{REPO}/manifests/{fixture_store.index}").status == 200
