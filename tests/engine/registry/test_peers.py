"""Peers: who owns a blob, which peer this node is, and pulls that wait for the owner.

The upstream is a real docker-registry; the owner is a real ``gadgetstore serve`` in peer mode on
a store that gets the blobs only while the pull is already waiting, as a fleet node's own pull
would; fakes stand in for liars and for peers that are down or empty.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.registry import mirrors as mirrors_module
from gadgetstore.engine.registry.blobfetch import BlobFetcher
from gadgetstore.engine.registry.client import RegistryClient, Session, TransferOptions
from gadgetstore.engine.registry.errors import NotFoundInRegistry
from gadgetstore.engine.registry.mirrors import MAX_PEER_FETCHES, Sources, Tallies
from gadgetstore.engine.registry.mirrors_config import (
    MAX_CONFIGURED_PEER_WAIT,
    Peers,
    RegistriesConfig,
    RegistriesConfigError,
    parse,
)
from gadgetstore.engine.registry.peers import SELF_ENV, find_self, rank
from gadgetstore.engine.registry.pull import image_slots, pull_images
from gadgetstore.engine.serve import ServeConfig
from gadgetstore.engine.serve.routes import MAX_BLOB_HOLD
from gadgetstore.engine.store import Store
from tests.engine.registry import test_mirrors
from tests.engine.registry.test_mirrors import ITEMS, Pushed, counts, not_found, push_behind_a_login
from tests.engine.serve.support import start_server, wait_for
from tests.support.fakes import FakeServer, Reply, Request
from tests.support.images import graph_digests, verify_store
from tests.support.registry import TEST_PASSWORD, RegistryServer, free_port

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
    assert find_self(peers(remote, "http://10.9.9.9:5050"), local_host=lambda host: host == "10.9.9.9") \
        == "http://10.9.9.9:5050"
    assert find_self(peers(remote, local), "192.0.2.7:5050") == remote
    assert find_self(peers(remote, local, self_url=remote)) == remote
    monkeypatch.setenv(SELF_ENV, "http://192.0.2.7:5050/")
    assert find_self(peers(remote, local)) == remote
    monkeypatch.delenv(SELF_ENV)
    with pytest.raises(RegistriesConfigError, match="several peers"):
        find_self(peers(local, "http://127.0.0.1:5051"), local_host=lambda host: True)
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
    ('[peers]\nurls = ["a:1"]\nwait = 51\n', "from 0 to 50"),  # under serve's 60 s cap and the read timeout
    ('[peers]\nurls = ["0.0.0.0:5050"]\n', "unspecified"),
    ('[peers]\nurls = ["http://[::]:5050"]\n', "unspecified"),
    ('[peers]\nurls = ["a:1"]\nself = "0.0.0.0:1"\n', "unspecified"),
    ('[peers]\nurls = ["a:1/path"]\n', "path"),
    ('[peers]\nurls = ["a:1"]\ntimeout = 3\n', "unknown"),
])
def test_bad_peers_are_refused(text: str, message: str) -> None:
    with pytest.raises(RegistriesConfigError, match=message):
        parse(text)


def test_a_configured_wait_ends_before_the_owner_or_the_read_timeout_gives_up() -> None:
    """A peer asked to hold a request for the longest configurable wait answers before it stops holding
    and before the asking client's read timeout."""
    assert MAX_CONFIGURED_PEER_WAIT < MAX_BLOB_HOLD
    assert TransferOptions().read_timeout > MAX_CONFIGURED_PEER_WAIT


def test_all_images_at_once_with_peers() -> None:
    assert image_slots(TransferOptions(), 50) == 16
    assert image_slots(TransferOptions(registries=RegistriesConfig(peers=peers("http://a:1"))), 50) == 50


def peer_options(upstream: RegistryServer, *urls: str, wait: float = 10.0, **kw: object) -> TransferOptions:
    config = RegistriesConfig(peers=Peers(tuple(urls), None, wait))
    return TransferOptions(insecure_registries=frozenset({upstream.host}), registries=config, **kw)  # type: ignore[arg-type]


async def test_waits_for_the_owner_then_takes_its_blobs(pushed: Pushed, tmp_path: Path) -> None:
    """The owner's store is empty when asked; its own 'pull' lands the blobs while the puller waits."""
    owner_root = tmp_path / "owner"
    owner_store = Store.open(owner_root)
    src = Store.open(pushed.src_root)
    server = await trio.to_thread.run_sync(start_server, owner_root, ServeConfig(peer_blobs=True))
    try:
        async def owner_pulls() -> None:
            await trio.to_thread.run_sync(wait_for, lambda: server.server.arrivals.waiting > 0)
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
    assert waited < 5  # woken when the blobs landed, not at the end of its 10 s wait
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
    assert empty.requests[0].path.endswith("&wait=0.1") and all("ns=" in r.path for r in empty.requests)
    assert all(r.path.endswith(("&wait=0.1", "&wait=0")) for r in empty.requests)  # 0: it lacked one already
    assert gone.sources[f"upstream {pushed.upstream.host}"].items == ITEMS
    assert 1 <= gone.sources[f"peer {down}"].failures <= BLOBS
    verify_store(tmp_path / "a")
    verify_store(tmp_path / "b")


async def test_lying_peer_never_corrupts_the_store(pushed: Pushed, tmp_path: Path) -> None:
    """The liar sends garbage of the right length, so only the digest check can catch it."""
    src = Store.open(pushed.src_root)

    def lie(req: Request) -> Reply:
        digest = Digest.parse(req.path.split("?")[0].rsplit("/", 1)[1])
        size = len(src.blobs.read(digest))
        return Reply(200, {"Content-Type": "application/octet-stream"}, b"x" * size)

    liar = FakeServer(lie)
    try:
        (result,) = await pull_images(Store.open(tmp_path / "dst"), [pushed.image],
                                      peer_options(pushed.upstream, f"http://{liar.host}"))
    finally:
        liar.close()
    assert result.error is None, result.error
    assert result.sources[f"upstream {pushed.upstream.host}"].items == ITEMS
    assert result.sources[f"peer http://{liar.host}"].items == 0
    assert result.sources[f"peer http://{liar.host}"].failures >= 1
    verify_store(tmp_path / "dst")


async def test_upstream_credentials_never_reach_a_peer(token_registry: RegistryServer, tmp_path: Path) -> None:
    image, creds = await push_behind_a_login(token_registry, tmp_path)

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


class _FakePeerFetches:
    """Stands in for the downloads from peers: records each request's URL and how many run at once."""

    def __init__(self, answer: str, seconds: float = 0.0) -> None:
        self.answer = answer  # "404" or "blob"
        self.seconds = seconds
        self.urls: list[str] = []
        self.running: Counter[str] = Counter()
        self.most = 0
        self.most_per_peer = 0

    async def fetch(self, fetcher: BlobFetcher, repo: str, desc: Descriptor) -> int:
        peer = fetcher.client.base_url
        self.urls.append(fetcher.client.url(f"/v2/{repo}/blobs/{desc.digest}"))
        self.running[peer] += 1
        self.most = max(self.most, sum(self.running.values()))
        self.most_per_peer = max(self.most_per_peer, self.running[peer])
        try:
            await trio.sleep(self.seconds)
        finally:
            self.running[peer] -= 1
        if self.answer == "404":
            raise NotFoundInRegistry("blob unknown")
        return desc.size


async def _from_peers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: _FakePeerFetches, urls: list[str],
                      blobs: int, at_once: bool, wait: float = 10.0, per_origin: int = 8) -> Tallies:
    """``blobs`` blobs asked of the peers at ``urls`` (none of them this node), all at once or in turn."""
    monkeypatch.delenv(SELF_ENV, raising=False)
    async def fetch(fetcher: BlobFetcher, repo: str, desc: Descriptor) -> int:
        return await fake.fetch(fetcher, repo, desc)

    monkeypatch.setattr(mirrors_module.BlobFetcher, "fetch", fetch)
    options = TransferOptions(registries=RegistriesConfig(peers=Peers(tuple(urls), None, wait)),
                              max_connections_per_origin=per_origin)
    store = Store.open(tmp_path / "dst")
    tallies: Tallies = {}
    async with Session(options) as session:
        sources = Sources(session)
        upstream = RegistryClient("registry.invalid", session)
        descs = [Descriptor("application/octet-stream", d, 10) for d in digests(blobs)]
        if at_once:
            async with trio.open_nursery() as nursery:
                for desc in descs:
                    nursery.start_soon(sources.from_peers, store, upstream, "r", desc, tallies)
        else:
            for desc in descs:
                await sources.from_peers(store, upstream, "r", desc, tallies)
    return tallies


@pytest.mark.parametrize("at_once", [False, True])
async def test_a_peer_that_lacked_a_blob_after_waiting_is_not_waited_for_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_once: bool) -> None:
    """One peer, one connection to it: the first request waits; every later one (queued or not) asks wait=0."""
    fake = _FakePeerFetches("404", seconds=0.01)
    await _from_peers(tmp_path, monkeypatch, fake, ["http://192.0.2.7:5050"], 6, at_once, per_origin=1)
    waits = [url.rsplit("&wait=", 1)[1] for url in fake.urls]
    assert waits == ["10"] + ["0"] * 5


async def test_peer_fetches_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the blob budget, but per peer the pool's connections and at most MAX_PEER_FETCHES in all."""
    few = _FakePeerFetches("blob", seconds=0.05)
    await _from_peers(tmp_path / "few", monkeypatch, few, ["http://192.0.2.7:5050", "http://192.0.2.8:5050"], 40,
                      at_once=True, per_origin=2)
    assert few.most == 4 and few.most_per_peer == 2
    many = _FakePeerFetches("blob", seconds=0.05)
    urls = [f"http://192.0.2.{i}:5050" for i in range(1, 21)]  # 20 peers x 8 connections: capped
    await _from_peers(tmp_path / "many", monkeypatch, many, urls, 600, at_once=True)
    assert many.most == MAX_PEER_FETCHES and many.most_per_peer <= 8


async def test_a_node_that_is_not_a_peer_says_so_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gadgetstore.registry.mirrors")
    fake = _FakePeerFetches("blob")
    tallies = await _from_peers(tmp_path, monkeypatch, fake, ["http://192.0.2.7:5050"], 5, at_once=True)
    assert tallies["peer http://192.0.2.7:5050"].items == 5
    assert sum("not among the peers" in r.getMessage() for r in caplog.records) == 1
