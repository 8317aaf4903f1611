"""Peers: who owns a blob, which peer this node is, and pulls that wait for the owner.

The upstream is a real docker-registry; the owner is a real ``gadgetstore serve`` in peer mode on
a store that gets the blobs only while the pull is already waiting, as a fleet node's own pull
would; fakes stand in for liars and for peers that are down or empty.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.registry import peers as peers_module
from gadgetstore.engine.registry.authfile import Credentials
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.mirrors_config import Peers, RegistriesConfig, RegistriesConfigError, parse
from gadgetstore.engine.registry.peers import SELF_ENV, find_self, rank
from gadgetstore.engine.registry.pull import image_slots, pull_images
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.serve import ServeConfig
from gadgetstore.engine.store import Store
from tests.engine.registry import test_mirrors
from tests.engine.registry.test_mirrors import ITEMS, Pushed, counts, not_found
from tests.engine.serve.support import start_server
from tests.support.fakes import FakeServer, Reply, Request
from tests.support.images import graph_digests, make_gadget_image, verify_store
from tests.support.registry import TEST_PASSWORD, TEST_USER, RegistryServer, free_port, unique_repo

pushed = test_mirrors.pushed  # the fixture: an image pushed to a real docker-registry
DOCUMENTS = 3  # index and two per-arch manifests: never asked of peers
BLOBS = ITEMS - DOCUMENTS  # config and two layers


def digests(n: int) -> list[Digest]:
    return [Digest.of_bytes(str(i).encode()) for i in range(n)]


def test_rank_agrees_spreads_and_moves_only_a_dropped_peers_blobs() -> None:
    urls = [f"http://10.0.0.{i}:5050" for i in range(4)]
    owners = {d: rank(urls, d)[0] for d in digests(400)}
    assert {d: rank(list(reversed(urls)), d)[0] for d in owners} == owners  # list order does not matter
    assert min(Counter(owners.values()).values()) >= 60  # about 100 each
    dropped = urls[1]
    after = {d: rank([u for u in urls if u != dropped], d)[0] for d in owners}
    assert all(after[d] == owner for d, owner in owners.items() if owner != dropped)


def peers(*urls: str, self_url: str | None = None) -> Peers:
    return Peers(tuple(urls), self_url)


def test_find_self(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SELF_ENV, raising=False)
    local, remote = "http://127.0.0.1:5050", "http://192.0.2.7:5050"  # 192.0.2.0/24: TEST-NET, never local
    assert find_self(peers(remote, local)) is None  # loopback tells no node apart; this one only asks
    assert find_self(peers(remote)) is None
    monkeypatch.setattr(peers_module, "_is_local", lambda host: host == "10.9.9.9")
    assert find_self(peers(remote, "http://10.9.9.9:5050")) == "http://10.9.9.9:5050"
    monkeypatch.undo()
    monkeypatch.delenv(SELF_ENV, raising=False)
    assert find_self(peers(remote, local), "192.0.2.7:5050") == remote
    assert find_self(peers(remote, local, self_url=remote)) == remote
    monkeypatch.setenv(SELF_ENV, "http://192.0.2.7:5050/")
    assert find_self(peers(remote, local)) == remote
    monkeypatch.delenv(SELF_ENV)
    monkeypatch.setattr(peers_module, "_is_local", lambda host: True)
    with pytest.raises(RegistriesConfigError, match="several peers"):
        find_self(peers(local, "http://127.0.0.1:5051"))
    with pytest.raises(RegistriesConfigError, match="not one of"):
        find_self(peers(local), "http://192.0.2.9:1")


def test_peers_config() -> None:
    config = parse('[peers]\nurls = ["10.0.0.1:5050", "http://10.0.0.2:5050/"]\nself = "10.0.0.2:5050"\n'
                   'wait = 2.5\nregistries = ["ghcr.io"]\n')
    assert config.peers == Peers(("http://10.0.0.1:5050", "http://10.0.0.2:5050"), "http://10.0.0.2:5050", 2.5,
                                 frozenset({"ghcr.io"}))
    assert config.peers.applies_to("ghcr.io") and not config.peers.applies_to("docker.io")
    assert parse("").peers is None


@pytest.mark.parametrize("text, message", [
    ("[peers]\n", "urls"),
    ('[peers]\nurls = ["https://a:1"]\n', "plain http"),
    ('[peers]\nurls = ["a:1", "http://a:1"]\n', "twice"),
    ('[peers]\nurls = ["a:1"]\nself = "b:1"\n', "not one of"),
    ('[peers]\nurls = ["a:1"]\nwait = -1\n', "wait"),
    ('[peers]\nurls = ["a:1/path"]\n', "path"),
    ('[peers]\nurls = ["a:1"]\ntimeout = 3\n', "unknown"),
])
def test_bad_peers_are_refused(text: str, message: str) -> None:
    with pytest.raises(RegistriesConfigError, match=message):
        parse(text)


def test_all_images_at_once_with_peers() -> None:
    assert image_slots(TransferOptions(), 50) == 16
    assert image_slots(TransferOptions(registries=RegistriesConfig(peers=peers("http://a:1"))), 50) == 50


def peer_options(upstream: RegistryServer, *urls: str, wait: float = 10.0, **kw: object) -> TransferOptions:
    config = RegistriesConfig(peers=Peers(tuple(urls), None, wait))
    return TransferOptions(insecure_registries=frozenset({upstream.host}), registries=config, **kw)  # type: ignore[arg-type]


async def test_waits_for_the_owner_then_takes_its_blobs(pushed: Pushed, tmp_path: Path) -> None:
    """The owner's store is empty when asked; its own 'pull' lands the blobs half a second later."""
    owner_root = tmp_path / "owner"
    owner_store = Store.open(owner_root)
    src = Store.open(pushed.src_root)
    server = await trio.to_thread.run_sync(start_server, owner_root, ServeConfig(peer_blobs=True))
    try:
        async def owner_pulls() -> None:
            await trio.sleep(0.5)
            for digest in graph_digests(src, pushed.image):
                await trio.to_thread.run_sync(owner_store.blobs.put, src.blobs.read(digest), digest)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(owner_pulls)
            start = trio.current_time()
            (result,) = await pull_images(Store.open(tmp_path / "dst"), [pushed.image],
                                          peer_options(pushed.upstream, f"http://{server.address}"))
            waited = trio.current_time() - start
    finally:
        await trio.to_thread.run_sync(server.stop)
    assert result.error is None, result.error
    assert counts(result.sources) == {f"upstream {pushed.upstream.host}": (DOCUMENTS, 0),
                                      f"peer http://{server.address}": (BLOBS, 0)}
    assert 0.4 < waited < 5
    verify_store(tmp_path / "dst")


async def test_owner_without_the_blob_or_down_sends_the_pull_upstream(pushed: Pushed, tmp_path: Path) -> None:
    empty = FakeServer(not_found)
    down = f"http://127.0.0.1:{free_port()}"
    try:
        (quiet,) = await pull_images(Store.open(tmp_path / "a"), [pushed.image],
                                     peer_options(pushed.upstream, f"http://{empty.host}", wait=0.1))
        with trio.fail_after(10):  # a peer that is down costs no waiting
            (gone,) = await pull_images(Store.open(tmp_path / "b"), [pushed.image],
                                        peer_options(pushed.upstream, down))
    finally:
        empty.close()
    assert counts(quiet.sources) == {f"upstream {pushed.upstream.host}": (ITEMS, 0),
                                     f"peer http://{empty.host}": (0, BLOBS)}
    assert all("wait=0.1" in r.path and "ns=" in r.path for r in empty.requests)
    assert gone.sources[f"upstream {pushed.upstream.host}"].items == ITEMS
    assert 1 <= gone.sources[f"peer {down}"].failures <= BLOBS
    verify_store(tmp_path / "a")
    verify_store(tmp_path / "b")


async def test_lying_peer_never_corrupts_the_store(pushed: Pushed, tmp_path: Path) -> None:
    liar = FakeServer(lambda req: Reply(200, {"Content-Type": "application/octet-stream"}, b"x" * 40_000))
    try:
        (result,) = await pull_images(Store.open(tmp_path / "dst"), [pushed.image],
                                      peer_options(pushed.upstream, f"http://{liar.host}"))
    finally:
        liar.close()
    assert result.error is None, result.error
    assert result.sources[f"upstream {pushed.upstream.host}"].items == ITEMS
    assert result.sources[f"peer http://{liar.host}"].items == 0
    verify_store(tmp_path / "dst")


async def test_upstream_credentials_never_reach_a_peer(token_registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    image = token_registry.ref(unique_repo("secret"), "v1")
    make_gadget_image(src, image)
    creds = {token_registry.host: Credentials(TEST_USER, TEST_PASSWORD)}
    await push_image(src, image, TransferOptions(credentials=creds, plain_http=frozenset({token_registry.host})))

    def peer(req: Request) -> Reply:
        if req.headers.get("authorization"):
            return Reply(500, {}, b"credentials leaked")
        return Reply(401, {"WWW-Authenticate": f'Bearer realm="http://{fake.host}/token"'},
                     json.dumps({"errors": []}).encode())

    fake = FakeServer(peer)
    try:
        config = RegistriesConfig(peers=Peers((f"http://{fake.host}",)))
        opts = TransferOptions(credentials=creds, plain_http=frozenset({token_registry.host}), registries=config)
        (result,) = await pull_images(Store.open(tmp_path / "dst"), [image], opts)
    finally:
        fake.close()
    assert result.error is None, result.error
    assert fake.requests and all("authorization" not in r.headers for r in fake.requests)
    assert not any(TEST_PASSWORD in r.path for r in fake.requests)
    assert result.sources[f"upstream {token_registry.host}"].items == ITEMS
