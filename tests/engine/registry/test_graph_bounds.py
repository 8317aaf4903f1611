"""Graphs that repeat or go deep: each distinct manifest is fetched once, and an image graph beyond the
limits fails with one error before anything below the limit is fetched (or, for a push, sent)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.descriptor import MAX_GRAPH_DEPTH, MAX_GRAPH_ENTRIES
from gadgetstore.engine.errors import GraphTooLarge
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import PullResult, pull_images
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.engine.serve.support import start_server
from tests.support.fakes import FakeServer, FaultProxy, Reply, Request
from tests.support.graphs import (
    Graph,
    GraphRegistry,
    diamond_chain,
    gadget_manifest,
    graph_gets,
    index_of,
    wide_index,
)
from tests.support.images import verify_store

DEEPEST_ALLOWED = MAX_GRAPH_DEPTH - 1  # indexes over the manifest, whose blobs are one level further down


def options(*hosts: str) -> TransferOptions:
    return TransferOptions(insecure_registries=frozenset(hosts), retries=0)


async def pull(store: Store, images: list[str], *hosts: str) -> list[PullResult]:
    return await pull_images(store, images, options(*hosts))


def assert_refused(result: PullResult, store: Store, graph: Graph, registry: GraphRegistry, message: str) -> None:
    """The image failed with one line, nothing is tagged, no plain blob was fetched, and what the failed
    pull left (the indexes it fetched, untagged) is all that gc removes."""
    assert isinstance(result.error, GraphTooLarge), result.error
    assert message in str(result.error) and "\n" not in str(result.error)
    assert store.tags() == [] and registry.gets("blobs") == {}
    left = set(store.blobs.iter_digests())
    assert left <= set(graph.types)
    assert set(store.gc().removed_blobs) == left and list(store.blobs.iter_digests()) == []


async def test_diamond_chain_costs_one_get_per_manifest(store: Store) -> None:
    graph = diamond_chain(DEEPEST_ALLOWED)
    registry = GraphRegistry({"chain": graph})
    try:
        (result,) = await pull(store, [registry.ref("chain")], registry.host)
    finally:
        registry.close()
    assert result.error is None, result.error
    manifests = registry.gets("manifests")
    assert max(manifests.values()) == 1 and len(manifests) == graph.documents  # 2**7 paths to the bottom
    assert max(registry.gets("blobs").values()) == 1
    assert set(store.walk([store.resolve(str(normalize(registry.ref("chain"))))])) == set(graph.blobs)


async def test_graph_deeper_than_the_limit_fails_before_fetching_below_it(store: Store) -> None:
    graph = diamond_chain(12)
    registry = GraphRegistry({"chain": graph})
    try:
        (result,) = await pull(store, [registry.ref("chain")], registry.host)
    finally:
        registry.close()
    assert_refused(result, store, graph, registry, f"levels below the root, deeper than the limit of {MAX_GRAPH_DEPTH}")
    assert sum(registry.gets("manifests").values()) == MAX_GRAPH_DEPTH + 1  # the root and one index per level


@pytest.mark.parametrize("distinct", [True, False], ids=["distinct", "one-manifest-repeated"])
async def test_graph_wider_than_the_limit_fails_before_fetching_its_children(store: Store, distinct: bool) -> None:
    graph = wide_index(MAX_GRAPH_ENTRIES + 1, distinct)
    registry = GraphRegistry({"wide": graph})
    try:
        (result,) = await pull(store, [registry.ref("wide")], registry.host)
    finally:
        registry.close()
    assert_refused(result, store, graph, registry, f"more than {MAX_GRAPH_ENTRIES} blobs and manifests")
    assert list(registry.gets("manifests")) == ["/v2/wide/manifests/v1"]


async def test_images_of_a_batch_fetch_a_shared_manifest_once(store: Store) -> None:
    """Two images whose indexes list the same manifest: while one image fetches it, the other waits.

    The registry holds its first answer for that manifest until a second request for it comes, or
    for at most 2 s: a second image that fetched on its own would thus always ask while the first
    request is still under way, and none is made when the second image waits.
    """
    a, b = Graph(), Graph()
    shared = gadget_manifest(a, "shared")
    b.blobs.update(a.blobs)
    b.types.update(a.types)
    a.root = index_of(a, [(shared, "amd64")])
    b.root = index_of(b, [(shared, "amd64"), (gadget_manifest(b, "own"), "arm64")])
    second = threading.Event()
    asked: list[str] = []

    def hold(req: Request) -> Reply | None:
        if req.path.endswith(f"/manifests/{shared['digest']}"):
            asked.append(req.path)
            if len(asked) == 1:
                second.wait(2)
            else:
                second.set()
        return None

    registry = GraphRegistry({"a": a, "b": b}, hold)
    try:
        results = await pull(store, [registry.ref("a"), registry.ref("b")], registry.host)
    finally:
        registry.close()
    assert [r.error for r in results] == [None, None]
    assert len(asked) == 1
    assert sum(r.blobs_fetched for r in results) == len(set(a.blobs) | set(b.blobs))
    verify_store(store.root)


@pytest.mark.parametrize("levels", [DEEPEST_ALLOWED, 12])
async def test_pull_from_a_serve_peer_fetches_each_manifest_once(store: Store, tmp_path: Path, levels: int) -> None:
    """``gadgetstore serve`` holding a diamond chain (it serves what its store has); the pulling node
    walks it once, and refuses it past the limit."""
    graph = diamond_chain(levels)
    graph.store_as(Store.open(tmp_path / "peer"), "example.com/chain:v1")
    server = await trio.to_thread.run_sync(start_server, tmp_path / "peer")
    proxy = FaultProxy(server.address)  # forwards every request as it is, and counts them
    try:
        (result,) = await pull(store, [f"{proxy.host}/chain:v1"], proxy.host)
    finally:
        proxy.close()
        await trio.to_thread.run_sync(server.stop)
    manifests = graph_gets(path for method, path, _ in proxy.requests if method == "GET")["manifests"]
    assert max(manifests.values()) == 1
    if levels == DEEPEST_ALLOWED:
        assert result.error is None, result.error
        assert len(manifests) == graph.documents
    else:
        assert isinstance(result.error, GraphTooLarge) and store.tags() == []
        assert len(manifests) == MAX_GRAPH_DEPTH + 1


class PushRecorder(FakeServer):
    """A registry that takes any push and records the order of manifest PUTs."""

    def __init__(self) -> None:
        super().__init__(self._answer)

    def _answer(self, req: Request) -> Reply:
        if req.method == "HEAD":
            return Reply(404)
        if req.method == "POST":
            return Reply(202, {"Location": "/v2/chain/blobs/uploads/u1"})
        return Reply(201)

    def pushed_manifests(self) -> list[str]:
        return [r.path.rsplit("/", 1)[1] for r in self.requests if r.method == "PUT" and "/manifests/" in r.path]


async def test_push_sends_each_manifest_once_after_everything_it_lists(store: Store) -> None:
    graph = diamond_chain(DEEPEST_ALLOWED)
    registry = PushRecorder()
    ref = f"{registry.host}/chain:v1"
    graph.store_as(store, str(normalize(ref)))
    try:
        await push_image(store, ref, options(registry.host))
    finally:
        registry.close()
    order = registry.pushed_manifests()
    assert order[-1] == "v1" and len(order) == len(set(order)) == graph.documents
    digests = [str(d) for d in graph.types]  # built bottom-up: each document after the ones it lists
    assert order[:-1] == [d for d in digests if d != str(graph.root_digest)]
    assert len([r for r in registry.requests if r.method == "HEAD"]) == len(graph.blobs) - graph.documents


async def test_push_of_a_graph_deeper_than_the_limit_fails_before_any_request(store: Store) -> None:
    registry = PushRecorder()
    ref = f"{registry.host}/chain:v1"
    diamond_chain(12).store_as(store, str(normalize(ref)))
    try:
        with pytest.raises(GraphTooLarge, match=rf"^image {ref}: sha256:\w+ is {MAX_GRAPH_DEPTH + 1} levels below"):
            await push_image(store, ref, options(registry.host))
    finally:
        registry.close()
    assert registry.requests == []

