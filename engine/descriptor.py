"""OCI descriptors and the manifest graph: pure functions over parsed JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import mediatypes as mt
from .digest import Digest
from .errors import GadgetStoreError, GraphTooLarge, InvalidManifest
from .gojson import go_escape, go_loads

_T = TypeVar("_T")


@dataclass(frozen=True)
class Descriptor:
    """A descriptor; ``extra`` keeps every other field (annotations, platform, …) for round trips."""

    media_type: str
    digest: Digest
    size: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_json(cls, obj: object, where: str = "descriptor") -> Descriptor:
        desc = _checked_fields(obj, where)
        digest = _digest_of(desc, where, Digest.parse)
        extra = {k: v for k, v in desc.items() if k not in ("mediaType", "digest", "size")}
        return cls(desc.get("mediaType", ""), digest, desc["size"], extra)

    @staticmethod
    def checked_json(obj: object, where: str = "descriptor") -> dict[str, Any]:
        """``obj`` when :meth:`from_json` takes it, else its :class:`InvalidManifest`, without making a
        Descriptor (a journal's replay checks every descriptor it keeps as JSON)."""
        desc = _checked_fields(obj, where)
        _digest_of(desc, where, Digest.check)
        return desc

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        out.update(self.extra)
        return out

    @property
    def annotations(self) -> dict[str, str]:
        ann = self.extra.get("annotations")
        return ann if isinstance(ann, dict) else {}

    @property
    def architecture(self) -> str | None:
        platform = self.extra.get("platform")
        if isinstance(platform, dict) and isinstance(platform.get("architecture"), str):
            return str(platform["architecture"])
        return None

    def with_annotations(self, annotations: dict[str, str] | None) -> Descriptor:
        extra = dict(self.extra)
        if annotations:
            extra["annotations"] = dict(annotations)
        else:
            extra.pop("annotations", None)
        return Descriptor(self.media_type, self.digest, self.size, extra)

    def bare(self) -> Descriptor:
        """Only mediaType, digest and size: what a tag points at."""
        return Descriptor(self.media_type, self.digest, self.size)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEX_TYPES

    @property
    def is_manifest(self) -> bool:
        return self.media_type in mt.MANIFEST_TYPES


def _checked_fields(obj: object, where: str) -> dict[str, Any]:
    """``obj`` when it is an object whose mediaType and size a descriptor takes (its digest is
    :func:`_digest_of`'s)."""
    if not isinstance(obj, dict):
        raise InvalidManifest(f"{where}: not a JSON object")
    size = obj.get("size")
    if not isinstance(obj.get("mediaType", ""), str):
        raise InvalidManifest(f"{where}: mediaType is not a string")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{where}: size must be a non-negative integer")
    return obj


def _digest_of(desc: dict[str, Any], where: str, read: Callable[[str], _T]) -> _T:
    """``read`` (:meth:`Digest.parse` or :meth:`Digest.check`) of the descriptor's digest, its
    error an :class:`InvalidManifest` naming ``where``."""
    try:
        return read(desc.get("digest", ""))
    except GadgetStoreError as err:
        raise InvalidManifest(f"{where}: {err}") from None


def parse_document(data: bytes, where: str) -> dict[str, Any]:
    """Parse a manifest or index, refusing oversized and ambiguous documents (CVE-2021-41190); its
    strings are what ig reads (:func:`.gojson.go_loads`)."""
    if len(data) > mt.MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"{where}: document is larger than {mt.MAX_MANIFEST_BYTES} bytes")
    try:
        doc = go_loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidManifest(f"{where}: not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{where}: not a JSON object")
    if "manifests" in doc and ("layers" in doc or "config" in doc):
        raise InvalidManifest(f"{where}: ambiguous document with both manifests and layers")
    return doc


_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})


def media_type_of(doc: dict[str, Any], content_type: str, where: str, expected_type: str = "") -> str:
    """The document's type: its ``mediaType``, which must agree with the registry's ``Content-Type``
    when that is specific; else that header, else ``expected_type`` (the descriptor that led to
    it), else inferred from its fields. The document must have that type's shape:
    ``schemaVersion`` 2, and ``manifests`` for an index, ``config`` and ``layers`` for a manifest
    (CVE-2021-41190)."""
    declared = doc.get("mediaType")
    header = content_type.split(";", 1)[0].strip().lower()
    if declared is not None and not isinstance(declared, str):
        raise InvalidManifest(f"{where}: mediaType is not a string")
    if declared and header not in _GENERIC_TYPES and declared != header:
        raise InvalidManifest(f"{where}: mediaType {declared} does not match Content-Type {header}")
    media_type = declared or next((t for t in (header, expected_type) if t not in _GENERIC_TYPES), "")
    if not media_type:
        media_type = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
    if media_type not in mt.INDEX_TYPES and media_type not in mt.MANIFEST_TYPES:
        raise InvalidManifest(f"{where}: unsupported manifest type {media_type}")
    schema = doc.get("schemaVersion")
    if schema != 2 or isinstance(schema, bool):
        raise InvalidManifest(f"{where}: schemaVersion must be 2")
    if media_type in mt.INDEX_TYPES:
        if "config" in doc or "layers" in doc:
            raise InvalidManifest(f"{where}: an index must not have config or layers")
        if not isinstance(doc.get("manifests"), list):
            raise InvalidManifest(f"{where}: an index must have a list of manifests")
    else:
        if "manifests" in doc:
            raise InvalidManifest(f"{where}: a manifest must not have manifests")
        if not isinstance(doc.get("config"), dict) or not isinstance(doc.get("layers"), list):
            raise InvalidManifest(f"{where}: a manifest must have a config and a list of layers")
    return media_type


def checked_document(data: bytes, where: str, content_type: str = "",
                     expected_type: str = "") -> tuple[dict[str, Any], str]:
    """Parse a manifest or index and settle its media type (see :func:`media_type_of`); it must be
    ``expected_type`` when the descriptor that led to it names one. One check for every way a
    document comes in: pulled (with the registry's ``content_type``), imported, or read back."""
    doc = parse_document(data, where)
    media_type = media_type_of(doc, content_type, where, expected_type)
    if expected_type and expected_type != media_type:
        raise InvalidManifest(f"{where}: descriptor says {expected_type}, document is {media_type}")
    return doc, media_type


def children(doc: dict[str, Any], where: str) -> list[Descriptor]:
    """Everything a manifest or index points at, in document order (config first)."""
    out: list[Descriptor] = []
    if "config" in doc:
        out.append(Descriptor.from_json(doc["config"], f"{where}: config"))
    for key in ("layers", "manifests"):
        items = doc.get(key, [])
        if items is None:
            continue
        if not isinstance(items, list):
            raise InvalidManifest(f"{where}: {key} is not a list")
        out.extend(Descriptor.from_json(item, f"{where}: {key}[{i}]") for i, item in enumerate(items))
    return out


def subject(doc: dict[str, Any], where: str) -> Descriptor | None:
    """The manifest a referrer (e.g. a signature) is attached to."""
    if doc.get("subject") is None:
        return None
    return Descriptor.from_json(doc["subject"], f"{where}: subject")


def is_document(desc: Descriptor) -> bool:
    """Whether the blob is a manifest or index whose children must be walked."""
    return desc.is_index or desc.is_manifest


MAX_GRAPH_DEPTH = 8  # levels below an image's root; an ig image has 2 (index, manifests, blobs)
MAX_GRAPH_ENTRIES = 10_000  # descriptors an image's documents list, repeats included


class GraphBudget:
    """The bounds of one image's graph, counted as it is walked breadth first from its root.

    A descriptor's level is the walk's first reach of it, which breadth first is its shortest
    distance from the root, whatever order a level's documents are read in. Each distinct document
    is expanded once, and every entry it lists counts (repeats too), so the count also bounds the
    work of walking: a chain of indexes that each list the next one twice costs two per level, not
    two to the power of the level. Exceeding either bound raises :class:`GraphTooLarge` before the
    offending descriptor is fetched or read.
    """

    def __init__(self, where: str, root: Descriptor, max_depth: int = MAX_GRAPH_DEPTH,
                 max_entries: int = MAX_GRAPH_ENTRIES) -> None:
        self.where = where  # names the image in the error, e.g. "image example.com/x:v1"
        self.max_depth = max_depth
        self.max_entries = max_entries
        self.levels: dict[Digest, int] = {root.digest: 0}
        self.entries = 0

    def admit(self, kids: Iterable[Descriptor], level: int) -> list[Descriptor]:
        """Count the entries one document at ``level`` lists; the ones not reached before, in order."""
        new: list[Descriptor] = []
        for kid in kids:
            self.entries += 1
            if self.entries > self.max_entries:
                raise GraphTooLarge(f"{self.where}: its manifests list more than {self.max_entries} "
                                    "blobs and manifests (the limit)")
            if kid.digest in self.levels:
                continue
            if level > self.max_depth:
                raise GraphTooLarge(f"{self.where}: {kid.digest} is {level} levels below the root, "
                                    f"deeper than the limit of {self.max_depth}")
            self.levels[kid.digest] = level
            new.append(kid)
        return new


def walk_graph(
    roots: Iterable[Descriptor],
    expand: Callable[[Descriptor], Iterable[Descriptor]],
    seen: dict[Digest, Descriptor] | None = None,
    budget: GraphBudget | None = None,
) -> dict[Digest, Descriptor]:
    """Every descriptor reachable from ``roots``, each digest visited once (breadth first).

    ``expand`` gives a descriptor's children (none for a leaf, or for whatever the caller decides
    not to follow); pass ``seen`` to share visits across several walks. A ``budget`` bounds the
    graph of one image: give it that image's root alone, and no ``seen`` shared with other walks
    (a node reached before would hide the depth below it).
    """
    seen = {} if seen is None else seen
    frontier: list[Descriptor] = []
    for root in roots:
        if root.digest not in seen:
            seen[root.digest] = root
            frontier.append(root)
    level = 0
    while frontier:
        level += 1
        following: list[Descriptor] = []
        for desc in frontier:
            kids = list(expand(desc))
            for kid in kids if budget is None else budget.admit(kids, level):
                if kid.digest not in seen:
                    seen[kid.digest] = kid
                    following.append(kid)
        frontier = following
    return seen


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with Go's HTML escaping, as ig/oras write manifests and index.json."""
    return go_escape(json.dumps(obj, separators=(",", ":"), ensure_ascii=False)).encode()
