"""JSON nested deeper than Python's parser goes, from a registry, a token server, a credential helper
or a file the user or the store holds: each reader gives the one line it gives for any other bad JSON
(or, for a listing it can do without, goes on without it), never a RecursionError traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry import authfile
from gadgetstore.engine.registry.authfile import AuthFileError, Credentials
from gadgetstore.engine.registry.client import Session, TransferOptions
from gadgetstore.engine.registry.errors import AuthError, RegistryError
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.registry.signatures.policy import PolicyError, load_policy
from gadgetstore.engine.registry.signatures.referrers import api_listing
from gadgetstore.engine.registry.taglist import list_tags
from gadgetstore.engine.store import Store
from tests.support.fakes import FakeServer, Reply, Request

# 60 kB: under every size cap on these bodies (64 KiB for an error body), a thousand times too deep
NESTED = b"[" * 30_000 + b"]" * 30_000
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    started: list[FakeServer] = []
    yield started
    for server in started:
        server.close()


def serve(servers: list[FakeServer], answer: dict[str, Reply]) -> FakeServer:
    """A registry answering each path that starts with a key of ``answer``; 404 elsewhere."""
    def handler(req: Request) -> Reply:
        for prefix, reply in answer.items():
            if req.path.startswith(prefix):
                return reply
        return Reply(404, JSON, b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}')

    server = FakeServer(handler)
    servers.append(server)
    return server


async def test_a_nested_tag_list_is_not_json(servers: list[FakeServer]) -> None:
    registry = serve(servers, {"/v2/a/b/tags/list": Reply(200, JSON, NESTED)})
    async with Session(TransferOptions(insecure_registries=frozenset({registry.host}))) as session:
        with pytest.raises(RegistryError) as info:
            await list_tags(session, normalize(f"{registry.host}/a/b"))
    assert str(info.value) == f"tags of {registry.host}/a/b: tag list is not JSON"


async def test_a_nested_token_response_is_not_json(servers: list[FakeServer], tmp_path: Path) -> None:
    registry = serve(servers, {})
    realm = f"http://{registry.host}/token"
    registry.handler = lambda req: (
        Reply(200, JSON, NESTED) if req.path.startswith("/token")
        else Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="svc"'}))
    store = Store.open(tmp_path / "s")
    options = TransferOptions(plain_http=frozenset({registry.host}), credentials={registry.host: Credentials("u", "p")},
                              retries=0)
    with pytest.raises(AuthError) as info:
        await pull_image(store, f"{registry.host}/a/b:v1", options)
    assert str(info.value) == f"{registry.host} token realm: token response is not JSON"
    assert store.tags() == []


async def test_a_nested_error_body_is_shown_as_text(servers: list[FakeServer], tmp_path: Path) -> None:
    registry = serve(servers, {"/v2/": Reply(403, JSON, NESTED)})
    store = Store.open(tmp_path / "s")
    options = TransferOptions(insecure_registries=frozenset({registry.host}), retries=0)
    with pytest.raises(AuthError) as info:
        await pull_image(store, f"{registry.host}/a/b:v1", options)
    assert str(info.value) == f"{registry.host}/a/b:v1: access denied (403 Forbidden): " + "[" * 200
    assert store.tags() == []


async def test_a_nested_referrers_listing_is_no_api(servers: list[FakeServer]) -> None:
    """A 200 that is not JSON is some front end, not the Referrers API: the tag scheme is used instead."""
    digest = Digest.of_bytes(b"x")
    registry = serve(servers, {f"/v2/a/b/referrers/{digest}": Reply(200, JSON, NESTED)})
    async with Session(TransferOptions(insecure_registries=frozenset({registry.host}))) as session:
        client = await session.client(registry.host)
        warnings: list[str] = []
        assert await api_listing(client, "a/b", digest, warnings.append) is None
    assert [r.path for r in registry.requests] == [f"/v2/a/b/referrers/{digest}"]
    assert warnings == []


def test_a_nested_auth_file_is_not_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(NESTED)
    with pytest.raises(AuthFileError) as info:
        authfile.load(path)
    assert str(info.value) == f"auth file {path} is not valid JSON"


def test_a_nested_store_policy_is_not_valid_json(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_bytes(NESTED)
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path)
    assert str(info.value) == f"store policy {tmp_path / 'policy.json'} is not valid JSON (nested too deeply)"
