"""Test helpers: the fixture store, a server thread, and a raw HTTP client (http.client)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.archive import import_archive
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.serve import ServeConfig, Server
from gadgetstore.engine.store import Store
from tests.support.images import DEMO_IMAGE, ArchivedImage, make_gadget_image, pseudo_random

FULL_REPO = DEMO_IMAGE.removesuffix(":latest")
REPO = FULL_REPO.removeprefix("ghcr.io/")
EXTRA_TAGS = ("v1", "v2", "v3", "v4", "v5")
SIGNATURE_TYPE = "application/vnd.example.signature.v1"
SBOM_CONFIG_TYPE = "application/vnd.example.sbom.config.v1"
EMPTY_JSON = b"{}"


@dataclass
class Fixture:
    """The served store; the digests of the suite's own image are read from it, never written down."""

    root: Path
    index: Digest  # the gadget image's root (FULL_REPO:latest)
    amd64: Digest  # its amd64 manifest
    amd64_layer: Digest  # that manifest's eBPF layer
    amd64_layer_size: int
    sig_tag: str
    signature: Digest  # pinned referrer with artifactType
    sbom: Digest  # pinned referrer whose artifactType comes from its config
    cosign: Digest  # manifest tagged sha256-<index>.sig
    other_layer: Digest  # a blob of another repository
    example_index: Digest  # example.com/<REPO>:other
    blobs: dict[Digest, bytes] = field(default_factory=dict)

    def fill(self, template: str) -> str:
        """``template`` with ``{index}``, ``{amd64}`` and ``{amd64_layer}`` replaced by those digests."""
        return template.format(index=self.index, amd64=self.amd64, amd64_layer=self.amd64_layer)


def _put_json(store: Store, obj: dict[str, Any]) -> Descriptor:
    data = json.dumps(obj, separators=(",", ":")).encode()
    return Descriptor(mt.OCI_MANIFEST, store.blobs.put(data), len(data))


def _referrer(store: Store, subject: Descriptor, payload: bytes, **fields: Any) -> Descriptor:
    layer = {"mediaType": "application/octet-stream", "digest": str(store.blobs.put(payload)), "size": len(payload)}
    manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, **fields, "layers": [layer],
                "subject": subject.to_json()}
    return _put_json(store, manifest)


def build_fixture_store(root: Path, gadget: ArchivedImage) -> Fixture:
    """``gadget`` (the suite's own image) with extra tags, referrers, a cosign tag and two more images."""
    store = Store.open(root)
    assert import_archive(store, gadget.path) == [f"{FULL_REPO}:latest"]
    index = store.resolve(f"{FULL_REPO}:latest")
    assert index.digest == gadget.root.digest
    empty = {"mediaType": mt.OCI_EMPTY, "digest": str(store.blobs.put(EMPTY_JSON)), "size": len(EMPTY_JSON)}
    signature = _referrer(store, index, b"signature bytes", artifactType=SIGNATURE_TYPE, config=empty,
                          annotations={"org.example.signer": "test"})
    sbom_config = b'{"sbom":true}'
    sbom_config_desc = {"mediaType": SBOM_CONFIG_TYPE, "digest": str(store.blobs.put(sbom_config)),
                        "size": len(sbom_config)}
    sbom = _referrer(store, index, b"", config=sbom_config_desc)  # an empty layer blob, too
    cosign_layer = b'{"critical":{"image":{"docker-manifest-digest":"%s"}}}' % str(index.digest).encode()
    cosign = _put_json(store, {
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": empty,
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": str(store.blobs.put(cosign_layer)), "size": len(cosign_layer)}],
    })
    sig_tag = f"sha256-{index.digest.hex}.sig"
    with store.transaction() as txn:
        for tag in EXTRA_TAGS:
            txn.tag(f"{FULL_REPO}:{tag}", index)
        txn.tag(sig_tag, cosign)
        txn.pin(signature)
        txn.pin(sbom)
    other_layer = pseudo_random(5000, "other")
    make_gadget_image(store, "ghcr.io/other/thing:1.0", shared_layer=other_layer, archs=("amd64",))
    example = make_gadget_image(store, f"example.com/{REPO}:other", layer_size=3000)
    layer = gadget.layers["amd64"]
    return Fixture(root, index.digest, gadget.manifests["amd64"].digest, layer.digest, layer.size, sig_tag,
                   signature.digest, sbom.digest, cosign.digest, Digest.of_bytes(other_layer), example.digest)


@dataclass
class RunningServer:
    host: str
    port: int
    server: Server
    token: trio.lowlevel.TrioToken
    thread: threading.Thread
    errors: list[BaseException]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=10)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> Reply:
        conn = self.connection()
        try:
            return send(conn, method, path, headers, body)
        finally:
            conn.close()

    def stop(self) -> None:
        if self.thread.is_alive():
            trio.from_thread.run_sync(self.server.shutdown, trio_token=self.token)
            self.thread.join(15)
        assert not self.thread.is_alive(), "server thread did not stop"
        assert not self.errors, self.errors


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_codes(self) -> list[str]:
        return [e["code"] for e in self.json()["errors"]]


def send(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> Reply:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return Reply(resp.status, resp.headers, resp.read())


def wait_for(check: Callable[[], bool], within: float = 10.0) -> None:
    """Until the server thread reaches a state (read from its objects); fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the server did not reach the expected state in time"
        time.sleep(0.01)


def start_server(root: Path, config: ServeConfig | None = None) -> RunningServer:
    """Run the real server on 127.0.0.1:<free port> in its own thread with its own trio loop."""
    config = config or ServeConfig(refresh_interval=0.0, shutdown_grace=2.0)
    ready = threading.Event()
    started: dict[str, Any] = {}
    errors: list[BaseException] = []

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        server = Server(Store.open(root), config)
        started["server"], started["token"] = server, trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            started["addresses"] = await nursery.start(server.serve, listeners)
            ready.set()

    def thread_main() -> None:
        try:
            trio.run(main)
        except BaseException as err:  # reported by stop(), never lost in the thread
            errors.append(err)
        finally:
            ready.set()

    thread = threading.Thread(target=thread_main, name="gadgetstore-serve", daemon=True)
    thread.start()
    assert ready.wait(15) and not errors, errors
    host, port = started["addresses"][0]
    return RunningServer(host, port, started["server"], started["token"], thread, errors)
