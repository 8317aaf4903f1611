"""The OCI 1.1 Referrers API side of signature pull/push: ``gadgetstore serve`` and a small fake registry.

distribution 2.8 (the real registry of the other tests) has no Referrers API, so this is where listing
by API, pagination, ``OCI-Subject`` on push and hostile listings are exercised.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trio

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine import reference
from gadgetstore.engine.descriptor import Descriptor, canonical_json
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import Session, TransferOptions
from gadgetstore.engine.registry.errors import RegistryError
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.registry.signatures import SignatureRefused, VerifyPolicy
from gadgetstore.engine.registry.signatures.referrers import MAX_REFERRER_PAGES, api_listing
from gadgetstore.engine.signatures import constants as c
from gadgetstore.engine.signatures import verify_image
from gadgetstore.engine.signatures.sign import SIGN_FORMATS, sign_image
from gadgetstore.engine.signatures.signing_keys import SigningKey, generate_private_key, public_key_of
from gadgetstore.engine.store import Store
from tests.engine.serve.support import start_server
from tests.support import httpserver
from tests.support.fakes import FakeServer, Reply, Request
from tests.support.images import make_gadget_image, verify_store


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_private_key("ecdsa-p256")


def options(host: str) -> TransferOptions:
    return TransferOptions(insecure_registries=frozenset({host}), retries=0)


async def test_pull_through_referrers_api_of_serve(tmp_path: Path, key: SigningKey) -> None:
    src = Store.open(tmp_path / "src")
    make_gadget_image(src, "example.com/sig/app:v1", archs=("amd64",))
    for fmt in SIGN_FORMATS:
        sign_image(src, "example.com/sig/app:v1", key, fmt)
    running = await trio.to_thread.run_sync(start_server, tmp_path / "src")
    try:
        image = f"{running.address}/sig/app:v1"
        dst = Store.open(tmp_path / "dst")
        result = await pull_image(dst, image, options(running.address), verify=VerifyPolicy((public_key_of(key),)))
    finally:
        await trio.to_thread.run_sync(running.stop)
    assert (result.signatures, result.warnings) == (3, [])
    ref = str(normalize(image))
    root = dst.resolve(ref)
    assert reference.legacy_signature_tag(root.digest) in dst.tags()
    assert {p.extra.get("artifactType") for p in dst.pins()} == {c.COSIGN_SIG_ARTIFACT, c.BUNDLE_V03}
    with dst.transaction() as txn:
        txn.untag(reference.legacy_signature_tag(root.digest))
    assert verify_image(dst, ref, [public_key_of(key)]).method == "cosign OCI 1.1"
    verify_store(tmp_path / "dst")


# -- a fake OCI 1.1 registry ----------------------------------------------------------------------


@dataclass
class FakeRegistry:
    """In-memory registry with the Referrers API (one referrer per page) and ``OCI-Subject`` on PUT."""

    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # "repo@ref" -> (type, bytes)
    blobs: dict[str, bytes] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # paths answered with 500
    extra_referrers: list[dict[str, Any]] = field(default_factory=list)  # listed besides the real ones
    leading_referrers: list[dict[str, Any]] = field(default_factory=list)  # listed before the real ones
    requests: list[str] = field(default_factory=list)
    host: str = ""
    link_origin: str = ""  # put before the path of a next-page link (by default a relative link)

    def referrers(self, repo: str, digest: str) -> list[dict[str, Any]]:
        out = []
        for key, (media_type, data) in sorted(self.manifests.items()):
            name, _, ref = key.partition("@")
            if name != repo or not ref.startswith("sha256:"):
                continue
            doc = json.loads(data)
            if (doc.get("subject") or {}).get("digest") == digest:
                kind = doc.get("artifactType") or doc.get("config", {}).get("mediaType")
                out.append({"mediaType": media_type, "digest": ref, "size": len(data), "artifactType": kind})
        return self.leading_referrers + out + self.extra_referrers


def _handler(fake: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self) -> tuple[str, str, str, dict[str, list[str]]]:
            url = urlsplit(self.path)
            parts = url.path.split("/")
            return "/".join(parts[2:-2]), parts[-2], parts[-1], parse_qs(url.query)

        def do_GET(self) -> None:
            fake.requests.append(f"GET {self.path}")
            if self.path == "/v2/":
                return self._send(200, b"{}")
            if urlsplit(self.path).path in fake.broken:
                return self._send(500, b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}')
            repo, kind, ref, query = self._route()
            if kind == "manifests" and f"{repo}@{ref}" in fake.manifests:
                media_type, data = fake.manifests[f"{repo}@{ref}"]
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                return self._send(200, data, {"Content-Type": media_type, "Docker-Content-Digest": digest})
            if kind == "blobs" and ref in fake.blobs:
                return self._send(200, fake.blobs[ref], {"Content-Type": "application/octet-stream"})
            if kind == "referrers":
                listed = fake.referrers(repo, ref)
                page = int(query.get("page", ["0"])[0])
                headers = {"Content-Type": mt.OCI_INDEX}
                if page + 1 < len(listed):
                    headers["Link"] = f'<{fake.link_origin}/v2/{repo}/referrers/{ref}?page={page + 1}>; rel="next"'
                body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": listed[page:page + 1]}
                return self._send(200, json.dumps(body).encode(), headers)
            return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')

        do_HEAD = do_GET

        def do_POST(self) -> None:
            fake.requests.append(f"POST {self.path}")
            return self._send(202, b"", {"Location": f"/upload/{uuid.uuid4().hex}"})

        def do_PUT(self) -> None:
            fake.requests.append(f"PUT {self.path}")
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            url = urlsplit(self.path)
            if url.path.startswith("/upload/"):
                fake.blobs[parse_qs(url.query)["digest"][0]] = body
                return self._send(201)
            repo, _, ref, _ = self._route()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            media_type = self.headers.get("Content-Type", "")
            fake.manifests[f"{repo}@{ref}"] = fake.manifests[f"{repo}@{digest}"] = (media_type, body)
            subject = json.loads(body).get("subject")
            headers = {"Docker-Content-Digest": digest}
            if subject:
                headers["OCI-Subject"] = subject["digest"]
            return self._send(201, b"", headers)

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    server = httpserver.serve(_handler(registry))
    registry.host = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield registry
    finally:
        httpserver.stop(server)


def signed(tmp_path: Path, fake: FakeRegistry, key: SigningKey, formats: tuple[str, ...] = SIGN_FORMATS
           ) -> tuple[Store, str]:
    src = Store.open(tmp_path / "src")
    image = str(normalize(f"{fake.host}/team/app:v1"))
    make_gadget_image(src, image, archs=("amd64",))
    for fmt in formats:
        sign_image(src, image, key, fmt)
    return src, image


async def test_push_to_referrers_api_writes_no_referrers_tag(fake: FakeRegistry, tmp_path: Path,
                                                             key: SigningKey) -> None:
    src, image = signed(tmp_path, fake, key)
    root = src.resolve(image)
    assert (await push_image(src, image, options(fake.host))).signatures == 3
    assert f"team/app@sha256-{root.digest.hex}.sig" in fake.manifests
    assert f"team/app@sha256-{root.digest.hex}" not in fake.manifests  # OCI-Subject said it is linked
    assert len(fake.referrers("team/app", str(root.digest))) == 2

    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, options(fake.host))
    assert (result.signatures, result.warnings) == (3, [])
    pages = [r for r in fake.requests if "/referrers/" in r]
    assert len(pages) == 2  # followed the Link header to the second page
    assert not any(f"manifests/sha256-{root.digest.hex} " in r + " " for r in fake.requests if r.startswith("GET"))
    assert verify_image(dst, image, [public_key_of(key)]).method == "cosign legacy"


async def test_hostile_listing_is_skipped_with_warnings(fake: FakeRegistry, tmp_path: Path, key: SigningKey) -> None:
    src, image = signed(tmp_path, fake, key, ("bundle",))
    await push_image(src, image, options(fake.host))
    root = src.resolve(image)
    # a "signature" whose subject is another image, and one that drags a huge layer along
    other = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": c.BUNDLE_V03,
                            "config": {"mediaType": mt.OCI_EMPTY, "digest": str(c.EMPTY_JSON_DIGEST), "size": 2},
                            "layers": [], "subject": {"mediaType": mt.OCI_INDEX, "digest": "sha256:" + "1" * 64,
                                                      "size": 10}})
    huge = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": c.BUNDLE_V03,
                           "config": {"mediaType": mt.OCI_EMPTY, "digest": str(c.EMPTY_JSON_DIGEST), "size": 2},
                           "layers": [{"mediaType": c.BUNDLE_V03, "digest": "sha256:" + "2" * 64,
                                       "size": 50 * 1024 * 1024}],
                           "subject": root.bare().to_json()})
    for data in (other, huge):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        fake.manifests[f"team/app@{digest}"] = (mt.OCI_MANIFEST, data)
    fake.extra_referrers.append({"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + hashlib.sha256(other).hexdigest(),
                                 "size": len(other), "artifactType": c.BUNDLE_V03})  # listed under the wrong image
    fake.extra_referrers.append({"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + "3" * 64, "size": 5,
                                 "artifactType": "application/vnd.example.sbom"})  # not a signature: never fetched
    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, options(fake.host))
    assert result.signatures == 1
    assert len(result.warnings) == 2
    assert any("subject is not" in w for w in result.warnings)
    assert any("is not what a signature holds" in w for w in result.warnings)
    assert not any("3" * 64 in r for r in fake.requests)
    assert verify_image(dst, image, [public_key_of(key)]).method == "cosign bundle"
    verify_store(tmp_path / "dst")


async def test_failing_signature_lookup_warns_but_pulls(fake: FakeRegistry, tmp_path: Path, key: SigningKey) -> None:
    src, image = signed(tmp_path, fake, key, ("legacy",))
    await push_image(src, image, options(fake.host))
    root = src.resolve(image)
    fake.broken.add(f"/v2/team/app/manifests/sha256-{root.digest.hex}.sig")
    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, options(fake.host))
    assert result.error is None and dst.resolve(image) == root
    assert result.signatures == 0
    assert len(result.warnings) == 1 and "cosign signature tag" in result.warnings[0]
    assert "registry error 500" in result.warnings[0]


async def test_a_referrers_page_linking_to_another_origin_is_not_followed(fake: FakeRegistry, tmp_path: Path,
                                                                         key: SigningKey) -> None:
    """The Referrers API's next page is followed only on the registry's own origin, as a tag list's is;
    what the first page listed is kept."""
    src, image = signed(tmp_path, fake, key)
    await push_image(src, image, options(fake.host))
    other = FakeRegistry()
    server = httpserver.serve(_handler(other))
    fake.link_origin = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        dst = Store.open(tmp_path / "dst")
        result = await pull_image(dst, image, options(fake.host))
    finally:
        httpserver.stop(server)
    assert other.requests == []
    assert result.error is None and result.signatures == 2  # the legacy tag, and page 1's referrer
    root = src.resolve(image)
    assert result.warnings == [f"referrers of /v2/team/app/referrers/{root.digest}: refusing a next-page link to "
                               f"another origin ({fake.link_origin}); kept the 1 referrer(s) its first 1 page(s) "
                               f"listed"]
    assert len(dst.pins()) == 1
    verify_store(tmp_path / "dst")


async def test_a_referrers_listing_longer_than_its_page_bound_is_an_error_not_a_cut(
        fake: FakeRegistry, tmp_path: Path, key: SigningKey) -> None:
    """The only signature is listed on page 9 of the Referrers API: past MAX_REFERRER_PAGES the
    lookup fails in one line (the verdict says why), where a cut listing read as "no signature"."""
    src, image = signed(tmp_path, fake, key, ("bundle",))
    await push_image(src, image, options(fake.host))
    fake.leading_referrers.extend({"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + f"{i}" * 64, "size": 5,
                                   "artifactType": "application/vnd.example.sbom"} for i in range(MAX_REFERRER_PAGES))
    dst = Store.open(tmp_path / "dst")
    with pytest.raises(SignatureRefused) as info:
        await pull_image(dst, image, options(fake.host), verify=VerifyPolicy((public_key_of(key),)))
    root = src.resolve(image)
    assert str(info.value).endswith(
        f"(also: could not fetch the signature referrers of {root.digest}: referrers of "
        f"/v2/team/app/referrers/{root.digest}: more than {MAX_REFERRER_PAGES} pages of referrers)")
    assert sum("/referrers/" in r for r in fake.requests) == MAX_REFERRER_PAGES
    assert dst.tags() == []
    verify_store(tmp_path / "dst")


@pytest.mark.parametrize(("second", "why"), [
    (Reply(404), "answered 404"),
    (Reply(200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"), "is not a JSON object"),
], ids=["404", "not json"])
async def test_a_later_referrers_page_that_is_no_listing_fails_the_lookup(second: Reply, why: str) -> None:
    """Only the first page says whether the Referrers API is there: a later page answering 404 or
    something that is no listing fails the lookup, where it returned the pages before it as if whole."""
    digest = Digest.of_bytes(b"image")
    first = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": str(Digest.of_bytes(b"sbom")), "size": 4,
         "artifactType": "application/vnd.example.sbom"}]})
    path = f"/v2/a/b/referrers/{digest}"

    def handler(req: Request) -> Reply:
        if req.path == path:
            return Reply(200, {"Content-Type": mt.OCI_INDEX, "Link": f'<{path}?page=2>; rel="next"'}, first)
        return second

    server = FakeServer(handler)
    try:
        async with Session(TransferOptions(insecure_registries=frozenset({server.host}))) as session:
            client = await session.client(server.host)
            with pytest.raises(RegistryError) as info:
                await api_listing(client, "a/b", digest, pytest.fail)
    finally:
        server.close()
    assert str(info.value) == f"referrers of {path}: page 2 {why}"


async def test_a_signature_blob_that_fails_to_push_fails_the_push_with_its_own_error(
        fake: FakeRegistry, tmp_path: Path, key: SigningKey) -> None:
    """Not an ExceptionGroup: a caller (and the CLI) sees the registry's error, as for an image blob."""
    src, image = signed(tmp_path, fake, key, ("legacy",))
    root = src.resolve(image)
    signature = src.read_document(src.resolve(reference.legacy_signature_tag(root.digest)))
    payload = signature["layers"][0]["digest"]
    fake.broken.add(f"/v2/team/app/blobs/{payload}")
    with pytest.raises(RegistryError) as caught:
        await push_image(src, image, options(fake.host))
    assert f"checking blob {payload}" in str(caught.value) and "registry error 500" in str(caught.value)
    assert f"team/app@sha256-{root.digest.hex}.sig" not in fake.manifests  # not tagged without its blobs


def test_descriptor_listing_round_trip() -> None:
    """The listing entry push writes for a referrers-tag index carries the artifact type."""
    from gadgetstore.engine.registry.signatures.referrers import listing_entry

    desc = Descriptor(mt.OCI_MANIFEST, c.EMPTY_JSON_DIGEST, 2)
    entry = listing_entry(desc, {"artifactType": c.BUNDLE_V03, "annotations": {"a": "b"}})
    assert entry.to_json() == {"mediaType": mt.OCI_MANIFEST, "digest": str(c.EMPTY_JSON_DIGEST), "size": 2,
                               "artifactType": c.BUNDLE_V03, "annotations": {"a": "b"}}


async def test_refusal_names_a_failed_lookup(fake: FakeRegistry, tmp_path: Path, key: SigningKey) -> None:
    """With --verify, a signature that could not be fetched is named in the one-line refusal."""
    from gadgetstore.engine.registry.signatures import SignatureRefused

    src, image = signed(tmp_path, fake, key, ("legacy",))
    await push_image(src, image, options(fake.host))
    root = src.resolve(image)
    fake.broken.add(f"/v2/team/app/manifests/sha256-{root.digest.hex}.sig")
    dst = Store.open(tmp_path / "dst")
    with pytest.raises(SignatureRefused) as caught:
        await pull_image(dst, image, options(fake.host), verify=VerifyPolicy((public_key_of(key),)))
    message = str(caught.value)
    assert "\n" not in message and "no cosign signature found" in message
    assert "(also: could not fetch the cosign signature tag" in message and "registry error 500" in message
    assert (dst.tags(), list(dst.blobs.iter_digests())) == ([], [])
