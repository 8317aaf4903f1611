"""What a registry's manifests must be before a pull trusts them (the same check as import's)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import InvalidManifest
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.store import Store
from tests.support.fakes import FakeServer, Reply, Request, serving

CONFIG = b"name: x\n"
CONFIG_DESC = {"mediaType": mt.GADGET_CONFIG, "digest": str(Digest.of_bytes(CONFIG)), "size": len(CONFIG)}
SERVED: dict[str, tuple[str, bytes]] = {
    "empty": (mt.OCI_MANIFEST, b"{}"),
    "no_layers": (mt.OCI_MANIFEST, json.dumps({"schemaVersion": 2, "config": CONFIG_DESC}).encode()),
    "index_as_manifest": (mt.OCI_MANIFEST, json.dumps({"schemaVersion": 2, "manifests": []}).encode()),
}


def registry(req: Request) -> Reply:
    """Every manifest request gets the document its tag names; nothing else exists."""
    tag = req.path.partition("/manifests/")[2]
    if tag in SERVED:
        content_type, body = SERVED[tag]
        return Reply(200, {"Content-Type": content_type, "Docker-Content-Digest": str(Digest.of_bytes(body))}, body)
    if req.path == "/v2/":
        return Reply(200)
    return Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"NOT_FOUND","message":"no"}]}')


@pytest.fixture
def server() -> Iterator[FakeServer]:
    yield from serving(registry)


@pytest.mark.parametrize(("tag", "message"), [
    ("empty", "schemaVersion must be 2"),
    ("no_layers", "a manifest must have a config and a list of layers"),
    ("index_as_manifest", "a manifest must not have manifests"),
])
async def test_a_malformed_manifest_is_not_pulled(server: FakeServer, store: Store, tag: str, message: str) -> None:
    options = TransferOptions(insecure_registries=frozenset({server.host}), backoff_base=0.01, backoff_max=0.02)
    with pytest.raises(InvalidManifest, match=message):
        await pull_image(store, f"{server.host}/x:{tag}", options)
    assert store.tags() == []
