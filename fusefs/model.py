"""The FUSE view as a pure model: paths → nodes over a :class:`Catalog` plus loaded facts.

No pyfuse3, no disk access: what the model does not know yet it asks for by raising
:class:`Missing`. Time is injected so the expiry of volatile facts can be tested.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.resolve import digest_query

from .catalog import Catalog
from .facts import (
    ArchFiles,
    BlobListFact,
    BlobStatFact,
    DocFact,
    ExtraFact,
    Fact,
    ImageData,
    ImageFact,
    LoadFailed,
)
from .nodes import ROOT_NODE, VOLATILE_KINDS, ImageRef, Kind, Node, blob_file, data_file

VOLATILE_TTL = 1.0
"""Seconds a blob listing, a blob stat, a document probe or a failed load stays valid."""
FAILED_TTL = 1.0
MAX_EXTRA_INFO = 8192
"""Extra-info results kept; they are deterministic, so an evicted one is recomputed identically.
Their byte strings are interned, so images sharing a layer share its analysis in memory."""
MAX_LISTINGS = 65536
"""Directory listings kept; every one can be rebuilt from facts, so this only bounds memory."""
ALGORITHMS = ("sha256",)


class NotFound(Exception):
    """No such name (ENOENT)."""


class Missing(Exception):
    """The model needs these facts loaded before it can answer."""

    def __init__(self, facts: Sequence[Fact]) -> None:
        super().__init__(f"{len(facts)} facts missing")
        self.facts = list(facts)


def _volatile(fact: Fact, value: Any) -> bool:
    """Facts that gc can make untrue without a journal change (blobs come and go)."""
    return isinstance(value, LoadFailed) or isinstance(fact, BlobStatFact | BlobListFact | DocFact)


class FsModel:
    def __init__(self, catalog: Catalog, host_arch: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.catalog = catalog
        self.host_arch = host_arch
        self.clock = clock
        self.root = ROOT_NODE
        self._facts: dict[Fact, tuple[Any, float]] = {}
        self._extra: OrderedDict[ExtraFact, dict[str, bytes]] = OrderedDict()
        self._manifest_index: tuple[tuple[int, str], dict[Digest, Descriptor]] | None = None
        self._listings: OrderedDict[tuple[Any, ...], list[tuple[str, Node]]] = OrderedDict()
        self._generation = 0
        self._interned: dict[bytes, bytes] = {}

    # -- facts -------------------------------------------------------------------------------------

    def add_fact(self, fact: Fact, value: Any) -> None:
        if isinstance(fact, ExtraFact) and not isinstance(value, LoadFailed):
            if len(self._interned) > MAX_EXTRA_INFO:
                self._interned.clear()  # only a memory saving: the values stay valid either way
            self._extra[fact] = {key: self._interned.setdefault(data, data) for key, data in value.items()}
            self._extra.move_to_end(fact)
            while len(self._extra) > MAX_EXTRA_INFO:
                self._extra.popitem(last=False)
            return
        self._facts[fact] = (value, self.clock())
        if isinstance(value, ImageData):
            self._manifest_index = None

    def _get(self, fact: Fact) -> Any:
        """The value of ``fact``; raises :class:`Missing` if unknown or expired, or the stored failure."""
        if isinstance(fact, ExtraFact) and fact in self._extra:
            self._extra.move_to_end(fact)
            return self._extra[fact]
        hit = self._facts.get(fact)
        if hit is not None:
            value, loaded_at = hit
            if not _volatile(fact, value) or self.clock() - loaded_at < VOLATILE_TTL:
                if isinstance(value, LoadFailed):
                    raise value.error
                return value
            del self._facts[fact]
        raise Missing([fact])

    def _peek(self, fact: Fact) -> Any:
        try:
            return self._get(fact)
        except (Missing, GadgetStoreError):
            return None

    def set_catalog(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._generation += 1

    # -- navigation --------------------------------------------------------------------------------

    def resolve(self, path: Sequence[str]) -> Node:
        node = self.root
        for name in path:
            node = self.child(node, name)
        return node

    def child(self, parent: Node, name: str) -> Node:
        """The node ``name`` in directory ``parent``; raises NotFound, Missing or a load failure."""
        if parent.kind is Kind.ROOT and name in ("by-digest", "blobs"):
            kind = Kind.DIGESTS if name == "by-digest" else Kind.BLOBS
            return Node((name,), kind, (name,))
        if parent.kind in (Kind.ROOT, Kind.NAMESPACE):
            return self._catalog_child((*parent.path, name))
        if parent.kind in (Kind.DIGESTS, Kind.BLOBS):
            if name not in ALGORITHMS:
                raise NotFound(name)
            kind = Kind.DIGEST_ALG if parent.kind is Kind.DIGESTS else Kind.BLOB_ALG
            return Node((parent.path[0], name), kind, (*parent.path, name))
        if parent.kind is Kind.DIGEST_ALG:
            return self._by_digest(parent, self._root_digest(parent, name), name)
        if parent.kind is Kind.BLOB_ALG:
            digest = self._digest(parent, name)
            size = self._get(BlobStatFact(digest))
            if size is None:
                raise NotFound(name)
            return blob_file((*parent.path, name), digest, size)
        for child_name, node in self.children(parent):
            if child_name == name:
                return node
        raise NotFound(name)

    def children(self, parent: Node) -> list[tuple[str, Node]]:
        """All entries of a directory, sorted by name (a shared list: do not modify it)."""
        cache_key = self._listing_key(parent)
        if cache_key is not None:
            hit = self._listings.get(cache_key)
            if hit is not None:
                self._listings.move_to_end(cache_key)
                return hit
        listing = self._children(parent)
        if cache_key is not None:
            self._listings[cache_key] = listing
            while len(self._listings) > MAX_LISTINGS:
                self._listings.popitem(last=False)
        return listing

    def _listing_key(self, parent: Node) -> tuple[Any, ...] | None:
        """Listings that only change with the catalog (or never) are kept; blob-backed ones are not."""
        if parent.kind in VOLATILE_KINDS:
            return None
        if parent.kind in (Kind.ROOT, Kind.NAMESPACE):
            return (self._generation, parent.key)
        return parent.key

    def _children(self, parent: Node) -> list[tuple[str, Node]]:
        if parent.kind in (Kind.ROOT, Kind.NAMESPACE):
            names = set(self.catalog.dirs.get(parent.path, ()))
            if parent.kind is Kind.ROOT:
                names |= {"by-digest", "blobs"}
            return [(n, self.child(parent, n)) for n in sorted(names)]
        if parent.kind in (Kind.DIGESTS, Kind.BLOBS):
            return [(n, self.child(parent, n)) for n in ALGORITHMS]
        if parent.kind is Kind.DIGEST_ALG:
            return self._digest_listing(parent)
        if parent.kind is Kind.BLOB_ALG:
            sizes: dict[str, int] = self._get(BlobListFact(parent.path[-1]))
            alg = parent.path[-1]
            return [(h, blob_file((*parent.path, h), Digest(alg, h), s)) for h, s in sorted(sizes.items())]
        if parent.kind is Kind.IMAGE:
            return sorted(self._image_entries(parent))
        if parent.kind is Kind.ARCHES:
            data = self._image_data(parent)
            arches = sorted(a.arch for a in data.arches)
            return [(a, self._sub(parent, Kind.ARCH, a, a)) for a in arches]
        if parent.kind is Kind.ARCH:
            arch = self._image_data(parent).arch(parent.arch or "")
            return sorted(self._arch_entries(parent, arch)) if arch else []
        if parent.kind is Kind.EXTRA:
            return self._extra_entries(parent)
        raise NotFound(parent.path[-1] if parent.path else "/")

    # -- the catalog part --------------------------------------------------------------------------

    def _catalog_child(self, path: tuple[str, ...]) -> Node:
        image = self.catalog.images.get(path)
        if image is not None:
            return self._image_node(path, image)
        if path in self.catalog.dirs:
            return Node(("ns", path), Kind.NAMESPACE, path)
        raise NotFound("/".join(path))

    @staticmethod
    def _image_node(path: tuple[str, ...], image: ImageRef) -> Node:
        return Node(("image", path, image.typed, str(image.root.digest)), Kind.IMAGE, path, image=image)

    @staticmethod
    def _digest(parent: Node, name: str) -> Digest:
        try:
            return Digest.parse(f"{parent.path[-1]}:{name}")
        except GadgetStoreError:
            raise NotFound(name) from None

    def _root_digest(self, parent: Node, name: str) -> Digest:
        """A whole hex digest, or a unique prefix of 12 or more hex digits of a root's (as Docker takes
        image IDs; looked up, never listed)."""
        try:
            return Digest.parse(f"{parent.path[-1]}:{name}")
        except GadgetStoreError:
            pass
        try:
            query = digest_query(f"{parent.path[-1]}:{name}")
        except GadgetStoreError:
            raise NotFound(name) from None
        found = [d for d in self.catalog.roots if query is not None and query.matches(d)]
        if len(found) != 1:
            raise NotFound(name)
        return found[0]

    def _by_digest(self, parent: Node, digest: Digest, name: str | None = None) -> Node:
        """A root by its digest, or a manifest of one (with the platform its index gives it).

        Every root is loaded before a non-root digest is answered, so whether a manifest shows
        its own architecture never depends on which images happened to be read before.
        """
        desc = self.catalog.roots.get(digest) or self._current_manifests(digest.algorithm).get(digest)
        if desc is None:
            desc = self._get(DocFact(digest))
            if desc is None:
                raise NotFound(digest.hex)
        return self._image_node((*parent.path, name or digest.hex), ImageRef(self.catalog.typed_for(digest), desc))

    def _require_roots(self, alg: str) -> list[Descriptor]:
        roots = [d for d in self.catalog.roots.values() if d.digest.algorithm == alg]
        missing: list[Fact] = [ImageFact(d) for d in roots if ImageFact(d) not in self._facts]
        if missing:
            raise Missing(missing)
        return roots

    def _current_manifests(self, alg: str) -> dict[Digest, Descriptor]:
        """The per-architecture manifests of today's roots (a removed image's are not among them)."""
        roots = self._require_roots(alg)
        stamp = (self._generation, alg)
        if self._manifest_index is None or self._manifest_index[0] != stamp:
            index: dict[Digest, Descriptor] = {}
            for root in roots:
                data = self._peek(ImageFact(root))
                if isinstance(data, ImageData):
                    for arch in data.arches:
                        index.setdefault(arch.manifest.desc.digest, arch.manifest.desc)
            self._manifest_index = (stamp, index)
        return self._manifest_index[1]

    def _digest_listing(self, parent: Node) -> list[tuple[str, Node]]:
        alg = parent.path[-1]
        digests = {d for d in self.catalog.roots if d.algorithm == alg} | set(self._current_manifests(alg))
        return [(d.hex, self._by_digest(parent, d)) for d in sorted(digests)]

    # -- inside an image ---------------------------------------------------------------------------

    def _image_data(self, node: Node) -> ImageData:
        assert node.image is not None
        data: ImageData = self._get(ImageFact(node.image.root))
        return data

    @staticmethod
    def _identity(node: Node) -> tuple[str, str]:
        assert node.image is not None
        return (node.image.typed, str(node.image.root.digest))

    def _sub(self, parent: Node, kind: Kind, name: str, arch: str | None) -> Node:
        path = (*parent.path, name)
        return Node((kind.value, path, self._identity(parent)), kind, path, image=parent.image, arch=arch)

    def _text(self, parent: Node, name: str, text: str) -> tuple[str, Node]:
        data = f"{text}\n".encode() if text else b""
        return name, data_file((*parent.path, name), self._identity(parent), data)

    def _image_entries(self, node: Node) -> list[tuple[str, Node]]:
        assert node.image is not None
        data = self._image_data(node)
        root = node.image.root
        host = data.arch(self.host_arch)
        entries = [
            self._text(node, "digest", str(root.digest)),
            self._text(node, "created", host.created if host and host.created else data.created),
            ("index.json", blob_file((*node.path, "index.json"), root.digest, root.size)),
            ("arch", self._sub(node, Kind.ARCHES, "arch", None)),
        ]
        if host is not None:
            entries += self._files(node, host)
            entries.append(("extra-info", self._sub(node, Kind.EXTRA, "extra-info", host.arch)))
        return entries

    def _arch_entries(self, node: Node, arch: ArchFiles) -> list[tuple[str, Node]]:
        assert node.image is not None
        root = node.image.root
        return [
            self._text(node, "digest", str(arch.manifest.desc.digest)),
            self._text(node, "created", arch.created),
            ("index.json", blob_file((*node.path, "index.json"), root.digest, root.size)),
            *self._files(node, arch),
            ("extra-info", self._sub(node, Kind.EXTRA, "extra-info", arch.arch)),
        ]

    @staticmethod
    def _files(node: Node, arch: ArchFiles) -> list[tuple[str, Node]]:
        return [(name, blob_file((*node.path, name), d.digest, d.size)) for name, d in arch.files]

    def _extra_entries(self, node: Node) -> list[tuple[str, Node]]:
        assert node.image is not None and node.arch is not None
        arch = self._image_data(node).arch(node.arch)
        if arch is None:
            return []
        info: dict[str, bytes] = self._get(ExtraFact(node.image.typed, arch.manifest.desc.digest, arch.manifest))
        ident = self._identity(node)
        return [(key, data_file((*node.path, key), ident, info[key])) for key in sorted(info) if _safe_name(key)]


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name
