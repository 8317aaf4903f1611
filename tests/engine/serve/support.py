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
from tests.support.images import make_gadget_image, pseudo_random

TRACE_OPEN_TAR = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "ig" / "trace_open.tar"
REPO = "inspektor-gadget/gadget/trace_open"
FULL_REPO = f"ghcr.io/{REPO}"
INDEX = Digest.parse("sha256:87c3ecca8d843f2e08382836cb0eff718fa5c56d786c73e2674d7e9db13a1ac7")
AMD64 = Digest.parse("sha256:20a6646251ab1273da15f6f3588a8fef4c6934f3dd88937db93a61dd652c66df")
AMD64_LAYER = Digest.parse("sha256:d4797e15f105a82e08912fe7168650ff5d425d8505742e4cbaa6e8a3b0b7a636")
AMD64_LAYER_SIZE = 88760
EXTRA_TAGS = ("v1", "v2", "v3", "v4", "v5")
SIGNATURE_TYPE = "application/vnd.example.signature.v1"
SBOM_CONFIG_TYPE = "application/vnd.example.sbom.config.v1"
EMPTY_JSON = b"{}"


@dataclass
class Fixture:
    root: Path
    sig_tag: str
    signature: Digest  # pinned referrer with artifactType
    sbom: Digest  # pinned referrer whose artifactType comes from its config
    cosign: Digest  # manifest tagged sha256-<index>.sig
    other_layer: Digest  # a blob of another repository
    example_index: Digest  # example.com/inspektor-gadget/gadget/trace_open:other
    blobs: dict[Digest, bytes] = field(default_factory=dict)


def _put_json(store: Store, obj: dict[str, Any]) -> Descriptor:
    data = json.dumps(obj, separators=(",", ":")).encode()
    return Descriptor(mt.OCI_MANIFEST, store.blobs.put(data), len(data))


def _referrer(store: Store, subject: Descriptor, payload: bytes, **fields: Any) -> Descriptor:
    layer = {"mediaType": "application/octet-stream", "digest": str(store.blobs.put(payload)), "size": len(payload)}
    manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, **fields, "layers": [layer],
                "subject": subject.to_json()}
    return _put_json(store, manifest)


def build_fixture_store(root: Path) -> Fixture:
    store = Store.open(root)
    import_archive(store, TRACE_OPEN_TAR)
    index = store.resolve(f"{FULL_REPO}:latest")
    empty = {"mediaType": mt.OCI_EMPTY, "digest": str(store.blobs.put(EMPTY_JSON)), "size": len(EMPTY_JSON)}
    signature = _referrer(store, index, b"signature bytes", artifactType=SIGNATURE_TYPE, config=empty,
                          annotations={"org.example.signer": "test"})
    sbom_config = b'{"sbom":true}'
    sbom_config_desc = {"mediaType": SBOM_CONFIG_TYPE, "digest": str(store.blobs.put(sbom_config)),
                        "size": len(sbom_config)}
    sbom = _referrer(store, index, b"", config=sbom_config_desc)  # an empty layer blob, too
    cosign_layer = b'{"critical":{"image":{"docker-manifest-digest":"%s"}}}' % str(INDEX).encode()
    cosign = _put_json(store, {
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": empty,
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": str(store.blobs.put(cosign_layer)), "size": len(cosign_layer)}],
    })
    sig_tag = f"sha256-{INDEX.hex}.sig"
    with store.transaction() as txn:
        for tag in EXTRA_TAGS:
            txn.tag(f"{FULL_REPO}:{tag}", index)
        txn.tag(sig_tag, cosign)
        txn.pin(signature)
        txn.pin(sbom)
    other_layer = pseudo_random(5000, "other")
    make_gadget_image(store, "ghcr.io/other/thing:1.0", shared_layer=other_layer, archs=("amd64",))
    example = make_gadget_image(store, f"example.com/{REPO}:other", layer_size=3000)
    return Fixture(root, sig_tag, signature.digest, sbom.digest, cosign.digest,
                   Digest.of_bytes(other_layer), example.digest)


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
