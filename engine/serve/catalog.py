"""A read-only snapshot of what the store serves: repositories, their graphs, tags and referrers.

Built in a worker thread whenever the journal changes, then shared by every request as an
immutable value, so routing needs no I/O and no lock. Manifests and indexes are small (at most
4 MiB, usually a few KiB), verified once when read, and kept in memory; other blobs stay on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine import reference
from gadgetstore.engine.descriptor import (
    Descriptor,
    children,
    is_document,
    parse_document,
    subject,
    walk_graph,
)
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.store import Store

from .names import NameTable

Reader = Callable[[Descriptor], bytes]


@dataclass(frozen=True)
class ServedManifest:
    """A manifest or index as served: verified bytes plus what the referrers API reports of it."""

    digest: Digest
    media_type: str
    data: bytes
    artifact_type: str | None
    annotations: dict[str, str]
    subject: Digest | None
    children: tuple[Descriptor, ...]

    def referrer_descriptor(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": len(self.data)}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def load_document(desc: Descriptor, data: bytes) -> ServedManifest:
    """Parse verified bytes; the document's own mediaType wins over its parent's descriptor."""
    where = f"manifest {desc.digest}"
    doc = parse_document(data, where)
    own_type = doc.get("mediaType")
    media_type = own_type if isinstance(own_type, str) and own_type else desc.media_type
    artifact_type = doc.get("artifactType")
    if not isinstance(artifact_type, str) or not artifact_type:
        config = doc.get("config")
        # Referrers API: an image manifest without artifactType reports its config's mediaType.
        artifact_type = config.get("mediaType") if isinstance(config, dict) else None
        artifact_type = artifact_type if isinstance(artifact_type, str) else None
    annotations = doc.get("annotations")
    subj = subject(doc, where)
    return ServedManifest(
        digest=desc.digest,
        media_type=media_type,
        data=data,
        artifact_type=artifact_type,
        annotations=annotations if isinstance(annotations, dict) else {},
        subject=subj.digest if subj else None,
        children=tuple(children(doc, where)),
    )


@dataclass(frozen=True)
class Repository:
    """One served repository: its tags (signature tags included) and every digest its graph reaches."""

    name: str
    tags: dict[str, Descriptor]
    contents: dict[Digest, Descriptor]
    referrers: dict[Digest, tuple[Digest, ...]]


@dataclass(frozen=True)
class ServedCatalog:
    """Everything ``serve`` answers from: its repositories, the manifests and indexes they reach, and names."""

    repositories: dict[str, Repository]
    documents: dict[Digest, ServedManifest]
    names: NameTable
    problems: tuple[str, ...] = ()

    def find(self, name: str, ns: str | None = None) -> Repository | None:
        full = self.names.resolve(name, ns)
        return None if full is None else self.repositories.get(full)


EMPTY_CATALOG = ServedCatalog({}, {}, NameTable(()))


@dataclass
class _Builder:
    read: Reader
    known: Mapping[Digest, ServedManifest]
    documents: dict[Digest, ServedManifest] = field(default_factory=dict)
    unreadable: set[Digest] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def document(self, desc: Descriptor) -> ServedManifest | None:
        digest = desc.digest
        if digest in self.documents:
            return self.documents[digest]
        if digest in self.unreadable:
            return None
        doc = self.known.get(digest)
        if doc is None:
            try:
                doc = load_document(desc, self.read(desc))
            except GadgetStoreError as err:
                self.unreadable.add(digest)
                self.problems.append(str(err))
                return None
        self.documents[digest] = doc
        return doc

    def walk(self, roots: Iterable[Descriptor], seen: dict[Digest, Descriptor]) -> None:
        walk_graph(roots, self._children, seen)

    def _children(self, desc: Descriptor) -> tuple[Descriptor, ...]:
        doc = self.document(desc) if is_document(desc) else None
        return doc.children if doc is not None else ()


def build_catalog(
    tags: Mapping[str, Descriptor],
    pins: Iterable[Descriptor],
    read: Reader,
    known: Mapping[Digest, ServedManifest] | None = None,
) -> ServedCatalog:
    """Group tags into repositories and attach signatures and pinned referrers to the graphs they sign.

    ``read`` returns a document's verified bytes (or raises a store error); ``known`` are documents
    of an earlier catalog, reused because content-addressed bytes never change.
    """
    builder = _Builder(read, known or {})
    grouped: dict[tuple[str, str], dict[str, Descriptor]] = {}
    signatures: list[tuple[str, Descriptor, Digest]] = []
    for ref_text, desc in sorted(tags.items()):
        signed = reference.signature_tag_subject(ref_text)
        if signed is not None:
            signatures.append((ref_text, desc, signed))
            continue
        try:
            ref = reference.parse(ref_text)
        except GadgetStoreError:
            builder.problems.append(f"skipping unparseable tag {ref_text!r}")
            continue
        entries = grouped.setdefault((ref.domain, ref.path), {})
        entries[ref.tag if ref.tag is not None else f"@{ref.digest}"] = desc
    pinned = [(desc, doc.subject) for desc in pins if (doc := builder.document(desc)) and doc.subject]

    repositories: dict[str, Repository] = {}
    for (domain, path), entries in sorted(grouped.items()):
        name = f"{domain}/{path}" if domain else path
        repo_tags = {tag: desc for tag, desc in entries.items() if not tag.startswith("@")}
        contents: dict[Digest, Descriptor] = {}
        builder.walk(entries.values(), contents)
        _attach_referrers(builder, contents, repo_tags, signatures, pinned)
        referrers: dict[Digest, list[Digest]] = {}
        for digest in sorted(contents):
            doc = builder.documents.get(digest)
            if doc is not None and doc.subject is not None:
                referrers.setdefault(doc.subject, []).append(digest)
        repositories[name] = Repository(
            name, repo_tags, contents, {s: tuple(ds) for s, ds in referrers.items()}
        )
    return ServedCatalog(
        repositories, dict(builder.documents), NameTable(grouped), tuple(builder.problems)
    )


def _attach_referrers(
    builder: _Builder,
    contents: dict[Digest, Descriptor],
    repo_tags: dict[str, Descriptor],
    signatures: list[tuple[str, Descriptor, Digest]],
    pinned: list[tuple[Descriptor, Digest]],
) -> None:
    """Signatures of signatures are attached too, so repeat until nothing new joins the graph."""
    added: set[Digest] = set()
    changed = True
    while changed:
        changed = False
        for ref_text, desc, signed in signatures:
            if signed in contents and ref_text not in repo_tags:
                repo_tags[ref_text] = desc
                builder.walk([desc], contents)
                changed = True
        for desc, signed in pinned:
            if signed in contents and desc.digest not in added:
                added.add(desc.digest)
                builder.walk([desc], contents)
                changed = True


def store_reader(store: Store) -> Reader:
    """Read a document through the store: size-capped and digest-verified."""

    def read(desc: Descriptor) -> bytes:
        data = store.blobs.read(desc.digest, max_size=mt.MAX_MANIFEST_BYTES)
        if len(data) != desc.size:
            raise GadgetStoreError(f"blob {desc.digest} is {len(data)} bytes, its descriptor says {desc.size}")
        return data

    return read


def catalog_of(store: Store, previous: ServedCatalog = EMPTY_CATALOG) -> ServedCatalog:
    """Blocking: build the catalog of the store's current journal state (run it in a thread)."""
    tags = {ref: desc for ref in store.tags() if (desc := store.lookup(ref)) is not None}
    return build_catalog(tags, store.pins(), store_reader(store), previous.documents)
