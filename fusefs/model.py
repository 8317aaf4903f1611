"""The FUSE view as a pure model: paths → nodes over a :class:`MountCatalog` plus loaded facts.

No pyfuse3, no disk access: what the model does not know yet it asks for by raising
:class:`Missing`. Time is injected so the expiry of volatile facts can be tested.

The root holds ``README``, ``tags``, the catalog's registries and short names, and ``.store/``
(``by-digest/`` and ``blobs/``: the store's insides, hidden from a plain ``ls``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.images import ImageRow, image_row, listed_reference
from gadgetstore.engine.reference import is_registry_component
from gadgetstore.engine.resolve import digest_query

from .catalog import README, STORE_DIR, TAGS, MountCatalog
from .facts import (
    ArchFiles,
    BlobListFact,
    BlobStat,
    BlobStatFact,
    DocFact,
    ExtraFact,
    Fact,
    ImageData,
    ImageFact,
    LoadFailed,
)
from .nodes import ROOT_NODE, VOLATILE_KINDS, ImageRef, Kind, Node, NodeKey, blob_file, data_file
from .textfiles import readme_text, rfc3339_ns, safe_name, tags_text

VOLATILE_TTL = 1.0
"""Seconds a blob listing, a blob stat, a document probe or a failed load stays valid."""
MAX_EXTRA_INFO = 8192
"""Extra-info results kept; they are deterministic, so an evicted one is recomputed identically.
Their byte strings are interned, so images sharing a layer share its analysis in memory."""
MAX_LISTINGS = 65536
"""Directory listings kept; every one can be rebuilt from facts, so this only bounds memory."""
ALGORITHMS = ("sha256",)
STORE_ENTRIES = {"by-digest": Kind.DIGESTS, "blobs": Kind.BLOBS}
CATALOG_KINDS = frozenset({Kind.ROOT, Kind.NAMESPACE, Kind.PENDING})
"""Directories whose names come from the catalog (the journal's tags)."""


class NotFound(Exception):
    """No such name.

    Internal: the adapter answers the kernel ENOENT; it never leaves the mount."""


class Missing(Exception):
    """The model needs these facts loaded before it can answer.

    Internal control flow: the adapter loads the facts and asks again; it never leaves the mount."""

    def __init__(self, facts: Sequence[Fact]) -> None:
        super().__init__(f"{len(facts)} facts missing")
        self.facts = list(facts)


def _volatile(fact: Fact, value: Any) -> bool:
    """Facts that gc can make untrue without a journal change (blobs come and go)."""
    return isinstance(value, LoadFailed) or isinstance(fact, BlobStatFact | BlobListFact | DocFact)


def _all_or_missing(makers: Sequence[tuple[str, Callable[[], Node]]]) -> list[tuple[str, Node]]:
    """Every ``(name, node)``, or one :class:`Missing` naming the facts of all of them at once
    (a listing that asked for them one by one would take a round trip per entry)."""
    out: list[tuple[str, Node]] = []
    missing: list[Fact] = []
    for name, make in makers:
        try:
            out.append((name, make()))
        except Missing as err:
            missing.extend(err.facts)
    if missing:
        raise Missing(missing)
    return out


class FsModel:
    def __init__(self, catalog: MountCatalog, host_arch: str, clock: Callable[[], float] = time.monotonic, *,
                 store_label: str = "", pull_on_access: bool = False) -> None:
        self.catalog = catalog
        self.host_arch = host_arch
        self.clock = clock
        self.store_label = store_label
        self.pull_on_access = pull_on_access
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

    def get_fact(self, fact: Fact) -> Any:
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
            return self.get_fact(fact)
        except (Missing, GadgetStoreError):
            return None

    def set_catalog(self, catalog: MountCatalog) -> None:
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
        if parent.kind is Kind.ROOT:
            if name == STORE_DIR:
                return Node((STORE_DIR,), Kind.STORE, (STORE_DIR,))
            if name in (README, TAGS):
                return self._root_file(name)
        if parent.kind in CATALOG_KINDS:
            return self._catalog_node((*parent.path, name))
        if parent.kind is Kind.STORE:
            kind = STORE_ENTRIES.get(name)
            if kind is None:
                raise NotFound(name)
            return Node((STORE_DIR, name), kind, (*parent.path, name))
        if parent.kind in (Kind.DIGESTS, Kind.BLOBS):
            if name not in ALGORITHMS:
                raise NotFound(name)
            kind = Kind.DIGEST_ALG if parent.kind is Kind.DIGESTS else Kind.BLOB_ALG
            return Node((parent.path[-1], name), kind, (*parent.path, name))
        if parent.kind is Kind.DIGEST_ALG:
            return self._by_digest(parent, self._root_digest(parent, name), name)
        if parent.kind is Kind.BLOB_ALG:
            digest = self._digest(parent, name)
            blob: BlobStat | None = self.get_fact(BlobStatFact(digest))
            if blob is None:
                raise NotFound(name)
            return blob_file((*parent.path, name), digest, blob.size, blob.mtime_ns)
        for child_name, node in self.children(parent):
            if child_name == name:
                return node
        raise NotFound(name)

    def entry_key(self, parent: Node, name: str) -> NodeKey | None:
        """The key ``child(parent, name)`` would have (None: no such name), without loading
        anything where the catalog alone decides; raises Missing where it does not."""
        if parent.kind is Kind.ROOT and name in (STORE_DIR, README, TAGS):
            return self.child(parent, name).key if name == STORE_DIR else self._root_file_key(name)
        if parent.kind in CATALOG_KINDS:
            try:
                return self._catalog_key((*parent.path, name))
            except NotFound:
                return None
        try:
            return self.child(parent, name).key
        except NotFound:
            return None

    def pending(self, path: tuple[str, ...]) -> Node:
        """A directory on the way to an image that pull on access may fetch (nothing to list)."""
        return Node(("pending", path), Kind.PENDING, path)

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
        if parent.kind in CATALOG_KINDS:
            return (self._generation, parent.key)
        return parent.key

    def _children(self, parent: Node) -> list[tuple[str, Node]]:
        if parent.kind is Kind.PENDING:
            raise NotFound("/".join(parent.path))  # nothing is stored there: only lookups go on
        if parent.kind in (Kind.ROOT, Kind.NAMESPACE):
            names = set(self.catalog.dirs.get(parent.path, ()))
            if parent.kind is Kind.ROOT:
                names |= {STORE_DIR, README, TAGS}
            return _all_or_missing([(n, lambda n=n: self.child(parent, n)) for n in sorted(names)])  # type: ignore[misc]
        if parent.kind is Kind.STORE:
            return [(n, self.child(parent, n)) for n in sorted(STORE_ENTRIES)]
        if parent.kind in (Kind.DIGESTS, Kind.BLOBS):
            return [(n, self.child(parent, n)) for n in ALGORITHMS]
        if parent.kind is Kind.DIGEST_ALG:
            return self._digest_listing(parent)
        if parent.kind is Kind.BLOB_ALG:
            blobs: dict[str, BlobStat] = self.get_fact(BlobListFact(parent.path[-1]))
            alg = parent.path[-1]
            return [(h, blob_file((*parent.path, h), Digest(alg, h), b.size, b.mtime_ns))
                    for h, b in sorted(blobs.items())]
        if parent.kind is Kind.IMAGE:
            return sorted(self._image_entries(parent))
        if parent.kind is Kind.ARCHES:
            data = self._image_data(parent)
            arches = sorted(a.arch for a in data.arches)
            return [(a, self._sub(parent, Kind.ARCH, a, a)) for a in arches]
        if parent.kind is Kind.ARCH:
            arch = self._image_data(parent).arch(parent.arch or "")
            return sorted(self._arch_entries(parent, arch)) if arch else []
        if parent.kind in (Kind.EXTRA, Kind.EXTRA_DIR):
            return self._extra_entries(parent)
        raise NotFound(parent.path[-1] if parent.path else "/")

    # -- the root's own files ----------------------------------------------------------------------

    def _root_file_key(self, name: str) -> NodeKey:
        return ("data", (name,), ("catalog", self._generation))

    def _root_file(self, name: str) -> Node:
        if name == README:
            top = self.catalog.dirs.get((), frozenset())
            data = readme_text(top, [n for n in top if is_registry_component(n)], self.host_arch, self.store_label,
                               self.pull_on_access)
        else:
            data = tags_text(self._list_rows())
        return data_file((name,), ("catalog", self._generation), data, self.catalog.dir_times.get(()))

    def _list_rows(self) -> list[ImageRow]:
        """``image list``'s rows, from this catalog: a tag whose image has no manifest for this host,
        or cannot be read, is left out as ``image list`` leaves it out."""
        listed = [(ref, desc) for text, desc in self.catalog.tags if (ref := listed_reference(text)) is not None]
        missing: list[Fact] = [ImageFact(desc) for _ref, desc in listed if ImageFact(desc) not in self._facts]
        if missing:
            raise Missing(list(dict.fromkeys(missing)))
        rows = []
        for ref, desc in listed:
            data = self._peek(ImageFact(desc))
            host = data.arch(self.host_arch) if isinstance(data, ImageData) else None
            if host is not None:
                rows.append(image_row(ref, desc, host.created))
        return rows

    # -- the catalog part --------------------------------------------------------------------------

    def _catalog_key(self, path: tuple[str, ...]) -> NodeKey:
        image = self.catalog.images.get(path)
        if image is not None:
            return ("image", path, image.typed, str(image.root.digest), image.committed_ns)
        if path in self.catalog.dirs:
            return ("ns", path)
        raise NotFound("/".join(path))

    def _catalog_node(self, path: tuple[str, ...]) -> Node:
        key = self._catalog_key(path)
        image = self.catalog.images.get(path)
        if image is not None:
            return self._image_node(key, path, image)
        return Node(key, Kind.NAMESPACE, path, mtime_ns=self.catalog.dir_times.get(path))

    def _image_node(self, key: NodeKey, path: tuple[str, ...], image: ImageRef) -> Node:
        data: ImageData = self.get_fact(ImageFact(image.root))
        return Node(key, Kind.IMAGE, path, image=image, mtime_ns=self._image_time(image, data))

    def _image_time(self, image: ImageRef, data: ImageData) -> int | None:
        """The host manifest's creation time (what ``image list`` shows), else the index's, else
        when the tag was committed, else when the image entered the store."""
        host = data.arch(self.host_arch)
        for text in (host.created if host else "", data.created):
            created = rfc3339_ns(text) if text else None
            if created is not None:
                return created
        return image.committed_ns if image.committed_ns is not None else data.stored_ns

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
            desc = self.get_fact(DocFact(digest))
            if desc is None:
                raise NotFound(digest.hex)
        path = (*parent.path, name or digest.hex)
        image = ImageRef(self.catalog.typed_for(digest), desc, self.catalog.first_commits.get(digest))
        return self._image_node(("image", path, image.typed, str(desc.digest), image.committed_ns), path, image)

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
        return _all_or_missing([(d.hex, lambda d=d: self._by_digest(parent, d)) for d in sorted(digests)])  # type: ignore[misc]

    # -- inside an image ---------------------------------------------------------------------------

    def _image_data(self, node: Node) -> ImageData:
        assert node.image is not None
        data: ImageData = self.get_fact(ImageFact(node.image.root))
        return data

    @staticmethod
    def _identity(node: Node) -> tuple[str, str, int | None]:
        assert node.image is not None
        return (node.image.typed, str(node.image.root.digest), node.image.committed_ns)

    def _sub(self, parent: Node, kind: Kind, name: str, arch: str | None) -> Node:
        path = (*parent.path, name)
        return Node((kind.value, path, self._identity(parent)), kind, path, image=parent.image, arch=arch,
                    mtime_ns=parent.mtime_ns)

    def _text(self, parent: Node, name: str, text: str) -> tuple[str, Node]:
        data = f"{text}\n".encode() if text else b""
        return name, self._data(parent, name, data)

    def _data(self, parent: Node, name: str, data: bytes) -> Node:
        return data_file((*parent.path, name), self._identity(parent), data, parent.mtime_ns)

    def _image_entries(self, node: Node) -> list[tuple[str, Node]]:
        assert node.image is not None
        data = self._image_data(node)
        root = node.image.root
        host = data.arch(self.host_arch)
        entries = [
            self._text(node, "digest", str(root.digest)),
            self._text(node, "created", host.created if host and host.created else data.created),
            ("index.json", blob_file((*node.path, "index.json"), root.digest, root.size, node.mtime_ns)),
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
            ("index.json", blob_file((*node.path, "index.json"), root.digest, root.size, node.mtime_ns)),
            *self._files(node, arch),
            ("extra-info", self._sub(node, Kind.EXTRA, "extra-info", arch.arch)),
        ]

    @staticmethod
    def _files(node: Node, arch: ArchFiles) -> list[tuple[str, Node]]:
        return [(name, blob_file((*node.path, name), d.digest, d.size, node.mtime_ns)) for name, d in arch.files]

    def _extra_entries(self, node: Node) -> list[tuple[str, Node]]:
        """``extra-info/`` (files and the ``programs``/``raw`` directories) or one of those directories."""
        assert node.image is not None and node.arch is not None
        arch = self._image_data(node).arch(node.arch)
        if arch is None:
            return []
        files: dict[str, bytes] = self.get_fact(ExtraFact(node.image.typed, arch.manifest.desc.digest, arch.manifest))
        prefix = f"{node.path[-1]}/" if node.kind is Kind.EXTRA_DIR else ""
        out: dict[str, Node] = {}
        for rel in sorted(files):
            if not rel.startswith(prefix):
                continue
            name, sep, _rest = rel[len(prefix):].partition("/")
            if not safe_name(name) or name in out:
                continue
            if sep and not prefix:
                out[name] = self._sub(node, Kind.EXTRA_DIR, name, node.arch)
            elif not sep:
                out[name] = self._data(node, name, files[rel])
        return list(out.items())

