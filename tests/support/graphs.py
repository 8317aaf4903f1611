"""Image graphs of hostile shapes, and a fake registry that serves any of them and counts its GETs.

A *diamond chain* is an index graph where each index lists the same child index twice, under two
platforms: ``levels`` indexes, then one gadget manifest (a config and one layer). Walked as a tree
it has 2**levels paths to its bottom; walked as a graph, ``levels + 3`` nodes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store
from tests.support.fakes import FakeServer, Reply, Request
from tests.support.images import pseudo_random

Entry = dict[str, object]  # a descriptor as JSON


def _compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Graph:
    """Blobs by digest (documents and plain blobs), the media type of each document, and the root."""

    blobs: dict[Digest, bytes] = field(default_factory=dict)
    types: dict[Digest, str] = field(default_factory=dict)
    root: Entry = field(default_factory=dict)

    def add(self, data: bytes, media_type: str) -> Entry:
        digest = Digest.of_bytes(data)
        self.blobs[digest] = data
        if media_type in mt.INDEX_TYPES | mt.MANIFEST_TYPES:
            self.types[digest] = media_type
        return {"mediaType": media_type, "digest": str(digest), "size": len(data)}

    @property
    def documents(self) -> int:
        return len(self.types)

    @property
    def root_digest(self) -> Digest:
        return Digest.parse(str(self.root["digest"]))

    def store_as(self, store: Store, ref: str) -> None:
        """Write every blob into ``store`` and tag the root ``ref`` (as a pull would have left it)."""
        for data in self.blobs.values():
            store.blobs.put(data)
        with store.transaction() as txn:
            txn.tag(ref, Descriptor.from_json(self.root))


def gadget_manifest(graph: Graph, seed: str, layer_size: int = 2000) -> Entry:
    config = graph.add(f"name: {seed}\n".encode(), mt.GADGET_CONFIG)
    layer = graph.add(pseudo_random(layer_size, seed), mt.GADGET_EBPF)
    return graph.add(_compact({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": mt.GADGET_ARTIFACT,
                               "config": config, "layers": [layer]}), mt.OCI_MANIFEST)


def index_of(graph: Graph, entries: list[tuple[Entry, str]]) -> Entry:
    """An index listing each ``(descriptor, architecture)``."""
    manifests = [{**desc, "platform": {"architecture": arch, "os": "linux"}} for desc, arch in entries]
    return graph.add(_compact({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}), mt.OCI_INDEX)


def diamond_chain(levels: int, seed: str = "diamond") -> Graph:
    """``levels`` indexes, each listing the next one twice (amd64, arm64), over one gadget manifest."""
    graph = Graph()
    child = gadget_manifest(graph, seed)
    for _ in range(levels):
        child = index_of(graph, [(child, "amd64"), (child, "arm64")])
    graph.root = child
    return graph


def wide_index(count: int, distinct: bool = True) -> Graph:
    """One index listing ``count`` manifests (made-up digests, never served), or one manifest ``count`` times."""
    graph = Graph()
    entries: list[tuple[Entry, str]] = []
    for i in range(count if distinct else 1):
        fake = Digest.of_bytes(f"manifest {i}".encode())
        entries.append(({"mediaType": mt.OCI_MANIFEST, "digest": str(fake), "size": 100}, "amd64"))
    graph.root = index_of(graph, entries if distinct else entries * count)
    return graph


def graph_gets(paths: Iterable[str]) -> dict[str, Counter[str]]:
    """GET paths (without their query) per kind, ``manifests`` or ``blobs``: by digest, or by the tag
    ``v1`` (not the signature lookups, which ask for tags of their own)."""
    out: dict[str, Counter[str]] = {"manifests": Counter(), "blobs": Counter()}
    for path in paths:
        parts = path.split("?", 1)[0].rsplit("/", 2)
        if len(parts) == 3 and parts[1] in out and (parts[2] == "v1" or parts[2].startswith("sha256:")):
            out[parts[1]][parts[0] + "/" + parts[1] + "/" + parts[2]] += 1
    return out


Hostile = Callable[[Request], Reply | None]


class GraphRegistry(FakeServer):
    """Serves ``graphs`` by repository, anonymously (tag ``v1`` names each root); counts GETs per path.

    ``hostile``, when set, answers first: whatever it returns instead of the honest answer.
    """

    def __init__(self, graphs: dict[str, Graph], hostile: Hostile | None = None) -> None:
        self.graphs = graphs
        self.hostile = hostile
        super().__init__(self._answer)

    def ref(self, repo: str) -> str:
        return f"{self.host}/{repo}:v1"

    def gets(self, kind: str) -> Counter[str]:
        """GETs per path of the graph's ``manifests`` or ``blobs`` (see :func:`graph_gets`)."""
        return graph_gets(r.path for r in self.requests if r.method == "GET")[kind]

    def _answer(self, req: Request) -> Reply:
        if self.hostile is not None and (reply := self.hostile(req)) is not None:
            return reply
        parts = req.path.split("?", 1)[0].split("/")
        if len(parts) < 5 or parts[1] != "v2" or parts[-2] not in ("manifests", "blobs"):
            return Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
        graph, reference = self.graphs.get("/".join(parts[2:-2])), parts[-1]
        digest = None if graph is None or reference.count(":") != 1 else Digest.parse(reference)
        if graph is not None and reference == "v1":
            digest = graph.root_digest
        if graph is None or digest not in graph.blobs:
            return Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        headers = {"Docker-Content-Digest": str(digest)}
        if parts[-2] == "manifests":
            headers["Content-Type"] = graph.types.get(digest, "application/octet-stream")
        return Reply(200, headers, graph.blobs[digest])
