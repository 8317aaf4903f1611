"""index.json: the one module that reads, merges and writes it.

Two kinds of store keep an ``index.json``:

- **gadgetstore's own store**, where the index journal is the truth: :class:`JournalMirror`
  writes index.json from the journal for other OCI tools, remembers that write in
  ``index.json.sync``, and merges back what another tool (skopeo, oras, ig) changed since.
- **a layout another tool owns** (ig's ``/var/lib/ig/oci-store``): index.json is the truth.
  :class:`IndexDocument` reads it as oras's ``loadIndex`` does and edits it in place of that
  tool: entries the edit does not touch keep their exact bytes and places, new entries are
  written as ig writes them (Go's ``encoding/json`` of an OCI descriptor, see :func:`go_descriptor`),
  and everything outside the ``manifests`` list stays as it was.

How oras reads index.json (content/oci/readonlyoci.go ``loadIndex``), which is what both follow:
entries are taken in file order; every entry tags its digest, and an entry with a
``org.opencontainers.image.ref.name`` annotation also tags that name; the last entry wins for a
name and for a digest. ``"manifests": null`` is an empty list.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import journal_format as jf
from . import mediatypes as mt
from .descriptor import Descriptor, canonical_json
from .errors import GadgetStoreError, InvalidManifest, StoreError
from .faults import crash_point
from .fsutil import atomic_write
from .gojson import go_loads

EMPTY_INDEX = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []})
"""What oras writes for a new layout (``loadIndexFile``), 88 bytes without a newline."""

StatKey = tuple[int, int, int, int]
"""(size, mtime_ns, ctime_ns, inode) of index.json: it changed when this did."""

# ocispec.Descriptor and ocispec.Platform (image-spec v1.1.1, specs-go/v1/descriptor.go): field order,
# and which fields Go omits when empty.
_DESCRIPTOR_FIELDS = (("mediaType", False), ("digest", False), ("size", False), ("urls", True),
                      ("annotations", True), ("data", True), ("platform", True), ("artifactType", True))
_PLATFORM_FIELDS = (("architecture", False), ("os", False), ("os.version", True), ("os.features", True),
                    ("variant", True))
_READ_ATTEMPTS = 20
_READ_RETRY_DELAY = 0.05


# -- encoding as ig does -----------------------------------------------------------------------


def go_descriptor(obj: dict[str, Any]) -> bytes:
    """``json.Marshal`` of an ``ocispec.Descriptor`` decoded from ``obj``, as oras writes index.json.

    Fields in the struct's order, empty optional ones left out, annotation keys sorted, strings
    with Go's HTML escaping; fields the struct does not have are dropped, as ig drops them.
    Raises :class:`InvalidManifest` for a value Go could not have decoded.
    """
    return canonical_json(go_descriptor_fields(obj))


def go_descriptor_fields(obj: object) -> dict[str, Any]:
    """The fields of :func:`go_descriptor`, in order, before encoding (``None``, JSON's null, is Go's
    zero descriptor; a missing field is its zero value)."""
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise InvalidManifest("descriptor must be an object")
    return _go_fields(obj, _DESCRIPTOR_FIELDS, _go_descriptor_value)


def _go_fields(obj: dict[str, Any], fields: tuple[tuple[str, bool], ...],
               convert: Callable[[str, Any], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, omit_empty in fields:
        value = obj.get(name)
        if omit_empty and not value:
            continue
        out[name] = convert(name, value)
    return out


def _go_descriptor_value(name: str, value: Any) -> Any:
    if name == "size":
        if value is None:
            return 0
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidManifest("descriptor size must be an integer")
        return value
    if name == "annotations":
        return dict(sorted(_string_map(value, "annotations").items()))
    if name == "urls":
        return _string_list(value, "urls")
    if name == "platform":
        if not isinstance(value, dict):
            raise InvalidManifest("descriptor platform must be an object")
        return _go_fields(value, _PLATFORM_FIELDS, _go_platform_value)
    return _string(value, name)


def _go_platform_value(name: str, value: Any) -> Any:
    return _string_list(value, name) if name == "os.features" else _string(value, name)


def _string(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidManifest(f"descriptor {name} must be a string")
    return value


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidManifest(f"descriptor {name} must be a list of strings")
    return list(value)


def _string_map(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidManifest(f"descriptor {name} must map strings to strings")
    return dict(value)


# -- reading as oras does ----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One element of ``manifests``: its exact text in the file (None for a new one) and its value."""

    text: str | None
    desc: Descriptor

    @property
    def ref(self) -> str | None:
        """Its ``ref.name``: the tag it gives (None for an untagged entry)."""
        return self.desc.annotations.get(mt.ANNOTATION_REF_NAME) or None

    def without_ref(self) -> dict[str, Any]:
        """The descriptor JSON without ``ref.name``: what the tag (or the digest) points at."""
        rest = {k: v for k, v in self.desc.annotations.items() if k != mt.ANNOTATION_REF_NAME}
        return self.desc.with_annotations(rest).to_json()

    def encoded(self) -> str:
        return self.text if self.text is not None else go_descriptor(self.desc.to_json()).decode()


class IndexDocument:
    """An index.json as text: the entries of ``manifests`` with their exact text, and the rest.

    ``head`` is everything before the ``manifests`` value, ``tail`` everything after it, so an edit
    rewrites only that value (and keeps its entries' bytes).
    """

    def __init__(self, head: str, entries: list[Entry], tail: str) -> None:
        self.head = head
        self.entries = entries
        self.tail = tail

    @classmethod
    def parse(cls, data: bytes, where: str = "index.json") -> IndexDocument:
        """Read ``data`` as oras would; raises :class:`StoreError` where oras would fail."""
        try:
            text = data.decode()
            value = go_loads(text)
        except (UnicodeDecodeError, ValueError) as err:
            raise StoreError(f"{where} is not a valid OCI image index (not JSON: {err})") from None
        if not isinstance(value, dict):
            raise StoreError(f"{where} is not a valid OCI image index (not a JSON object)")
        items = value.get("manifests")
        if items is not None and not isinstance(items, list):
            raise StoreError(f"{where} is not a valid OCI image index (manifests is not a list)")
        head, spans, tail = _manifest_spans(text)
        entries: list[Entry] = []
        for i, (item, (start, end)) in enumerate(zip(items or [], spans, strict=True)):
            try:
                desc = Descriptor.from_json(item, f"manifests[{i}]")
                if "annotations" in item:
                    _string_map(item["annotations"], "annotations")
            except GadgetStoreError as err:
                raise StoreError(f"{where} is not a valid OCI image index ({err})") from None
            entries.append(Entry(text[start:end], desc))
        return cls(head, entries, tail)

    @classmethod
    def empty(cls) -> IndexDocument:
        return cls.parse(EMPTY_INDEX)

    def frozen(self) -> IndexDocument:
        """The same document with every entry's text fixed, as it is written."""
        return IndexDocument(self.head, [Entry(entry.encoded(), entry.desc) for entry in self.entries], self.tail)

    def render(self) -> bytes:
        """The file's bytes; an empty list is written ``null``, as ig writes it."""
        body = ",".join(entry.encoded() for entry in self.entries)
        return f"{self.head}{f'[{body}]' if self.entries else 'null'}{self.tail}".encode()

    def state(self) -> jf.IndexState:
        """Tags (name → descriptor without ``ref.name``) and untagged entries (digest → descriptor),
        the last entry winning, as oras's tag map holds them."""
        state = jf.IndexState()
        for entry in self.entries:
            if entry.ref is not None:
                state.tags[entry.ref] = entry.without_ref()
            else:
                state.pins[str(entry.desc.digest)] = entry.without_ref()
        return state

    def edited(self, ops: Iterable[jf.Op], descendants: Callable[[Descriptor], list[Descriptor]]) -> IndexDocument:
        """A copy with ``ops`` applied as ig would record the same change.

        - ``tag``: the tagged entry replaces any other entry of that name, and the untagged entry of
          its digest (ig writes no untagged entry for a tagged digest); it goes after the last tagged
          entry, where ig puts tagged entries.
        - ``pin``: an untagged entry, unless its digest has an entry already.
        - both add, at the end, an untagged entry for each manifest or index below the root that has
          no entry yet, with the descriptor its parent lists (``descendants``, breadth first): what
          ig's pull adds for every manifest it writes.
        - ``untag`` and ``unpin`` remove the entries of that name, or the untagged ones of that digest.
        """
        entries = list(self.entries)
        for op in ops:
            if isinstance(op, jf.Tag):
                desc = Descriptor.from_json(op.desc, f"tag {op.ref}")
                entries = [e for e in entries
                           if e.ref != op.ref and not (e.ref is None and e.desc.digest == desc.digest)]
                tagged = desc.with_annotations({**desc.annotations, mt.ANNOTATION_REF_NAME: op.ref})
                at = max((i + 1 for i, e in enumerate(entries) if e.ref is not None), default=0)
                entries.insert(at, Entry(None, tagged))
                _add_untagged(entries, descendants(desc))
            elif isinstance(op, jf.Pin):
                desc = Descriptor.from_json(op.desc, "pin")
                _add_untagged(entries, [desc, *descendants(desc)])
            elif isinstance(op, jf.Untag):
                entries = [e for e in entries if e.ref != op.ref]
            else:
                entries = [e for e in entries if e.ref is not None or str(e.desc.digest) != op.digest]
        return IndexDocument(self.head, entries, self.tail)


def _add_untagged(entries: list[Entry], descs: Iterable[Descriptor]) -> None:
    present = {entry.desc.digest for entry in entries}
    for desc in descs:
        if desc.digest not in present:
            rest = {k: v for k, v in desc.annotations.items() if k != mt.ANNOTATION_REF_NAME}
            entries.append(Entry(None, desc.with_annotations(rest)))
            present.add(desc.digest)


_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder()


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _manifest_spans(text: str) -> tuple[str, list[tuple[int, int]], str]:
    """Where the (last) ``manifests`` member's value and each of its elements lie in ``text``, a
    JSON object already known to parse: (text before the value, element spans, text after it).
    Without that member, the value goes in as the object's last member."""
    pos = _skip(text, 0) + 1  # past "{"
    value_span: tuple[int, int] | None = None
    members = 0
    while True:
        pos = _skip(text, pos)
        if text[pos] == "}":
            break
        key, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
        pos = _skip(text, _skip(text, pos) + 1)  # past ":"
        _, end = _DECODER.raw_decode(text, pos)
        if key == "manifests":
            value_span = (pos, end)
        members += 1
        pos = _skip(text, end)
        if text[pos] == ",":
            pos += 1
    if value_span is None:
        return f'{text[:pos]}{"," if members else ""}"manifests":', [], text[pos:]
    start, end = value_span
    spans: list[tuple[int, int]] = []
    if text[start] == "[":
        pos = _skip(text, start + 1)
        while text[pos] != "]":
            _, item_end = _DECODER.raw_decode(text, pos)
            spans.append((pos, item_end))
            pos = _skip(text, item_end)
            if text[pos] == ",":
                pos = _skip(text, pos + 1)
    return text[:start], spans, text[end:]


def stat_key(path: Path) -> StatKey | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def load_index(path: Path, locked: bool, pause: Callable[[float], None] = time.sleep
               ) -> tuple[IndexDocument, StatKey | None]:
    """The layout's index.json (an empty index when there is none), and the stat it was read at.

    ig rewrites index.json in place (truncate, then write) under its lock. ``locked`` says the
    caller holds that lock; otherwise a file that does not parse, or that changed while it was
    read, is read again (for about a second: ``pause`` waits between the reads) before it counts
    as damaged.
    """
    attempts = 1 if locked else _READ_ATTEMPTS
    for attempt in range(attempts):
        before = stat_key(path)
        if before is None:
            return IndexDocument.empty(), None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        try:
            document = IndexDocument.parse(data, str(path))
        except StoreError:
            if attempt + 1 == attempts:
                raise
        else:
            if locked or stat_key(path) == before:
                return document, before
        pause(_READ_RETRY_DELAY)
    raise StoreError(f"{path} kept changing while it was read; try again")


def write_index(path: Path, document: IndexDocument) -> None:
    """Replace index.json atomically (whole, or not at all), keeping its file mode."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    atomic_write(path, document.render(), mode)


# -- gadgetstore's own store: index.json mirrors the journal --------------------------------------


class JournalMirror:
    """index.json of a store whose journal is the truth, and its sync record ``index.json.sync``.

    The sync record remembers our last write (size, mtime, inode) and the journal's length then,
    so that another tool's later edit is told apart from ours and merged three-way against the
    journal as it was (see :meth:`merge_foreign_edits`).
    """

    def __init__(self, root: Path, journal: Any) -> None:
        self.index_path = root / "index.json"
        self.sync_path = root / "index.json.sync"
        self.journal = journal  # a journal.Journal

    def ops_from_index_json(self) -> list[jf.Op]:
        """Tags (entries with ``ref.name``) and pins (other platform-less entries) of index.json."""
        try:
            index = go_loads(self.index_path.read_bytes())
            entries = index.get("manifests") or []
            if not isinstance(entries, list):
                raise TypeError
        except FileNotFoundError:
            return []
        except (ValueError, AttributeError, TypeError):
            raise StoreError(f"{self.index_path} is not a valid OCI image index") from None
        ops: list[jf.Op] = []
        for i, entry in enumerate(entries):
            desc = Descriptor.from_json(entry, f"index.json manifests[{i}]")
            ref = desc.annotations.get(mt.ANNOTATION_REF_NAME)
            if ref:
                rest = {k: v for k, v in desc.annotations.items() if k != mt.ANNOTATION_REF_NAME}
                ops.append(jf.Tag(ref, desc.with_annotations(rest).to_json()))
            elif desc.architecture is None:
                ops.append(jf.Pin(desc.to_json()))
        return ops

    def merge_foreign_edits(self) -> bool:
        """Adopt what another tool (skopeo, oras, ig) changed in index.json since we last wrote it.

        When index.json differs from our last write, it is compared with what it was written
        from, the journal up to that length, so that only the other tool's own changes are
        appended; tags recorded since (index.json lags during a deferred block and after a crash)
        are kept. When that journal prefix is gone (compacted) the comparison is with the journal
        as it is, and the other tool's view wins. True when index.json was another tool's
        (readable, and now merged): the caller rewrites it. Under the index lock.
        """
        record = self.read_sync_record()
        if not self.index_path.exists() or record.get("index") == self._stat_key():
            return False
        foreign = jf.IndexState()
        try:
            foreign.apply(self.ops_from_index_json())
        except GadgetStoreError:
            return False  # unreadable: not an edit to adopt; it is rewritten from the journal
        state = self.journal.state
        source = self.source(record)
        base = state if source is None else source[0]
        ops: list[jf.Op] = []
        for ref in sorted(foreign.tags.keys() | base.tags.keys()):
            theirs = foreign.tags.get(ref)
            if theirs != base.tags.get(ref) and theirs != state.tags.get(ref):
                ops.append(jf.Untag(ref) if theirs is None else jf.Tag(ref, theirs))
        for key in sorted(foreign.pins.keys() | base.pins.keys()):
            theirs = foreign.pins.get(key)
            if theirs != base.pins.get(key) and theirs != state.pins.get(key):
                ops.append(jf.Unpin(key) if theirs is None else jf.Pin(theirs))
        if ops:
            self.journal.append(ops)
        return True

    def source(self, record: dict[str, Any] | None = None) -> tuple[jf.IndexState, int] | None:
        """The journal state and length our last index.json was written from (``record``: the sync
        record, read when not given); None when that part of the journal is gone (compacted)."""
        record = self.read_sync_record() if record is None else record
        length, inode = record.get("journal_length"), record.get("journal_inode")
        if not isinstance(length, int) or not isinstance(inode, int):
            return None
        base = self.journal.state_at(length, inode)
        return None if base is None else (base, length)

    def _stat_key(self) -> list[int] | None:
        try:
            st = os.stat(self.index_path)
        except FileNotFoundError:
            return None
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def read_sync_record(self) -> dict[str, Any]:
        try:
            record = go_loads(self.sync_path.read_bytes())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def in_step(self) -> bool:
        """Cheap check (two small reads): index.json is ours and reflects the whole journal."""
        record = self.read_sync_record()
        return record.get("journal_length") == self.journal.length and record.get("index") == self._stat_key()

    def expected(self) -> dict[str, Any]:
        """The index.json the journal makes now."""
        return self.journal.state.oci_index(self.journal.length)

    def write(self) -> None:
        """Rewrite index.json from the journal, then the sync record (under the index lock)."""
        atomic_write(self.index_path, json.dumps(self.expected(), separators=(",", ":")).encode(), 0o644)
        crash_point("index.replaced")
        record = {"journal_length": self.journal.length, "journal_inode": self.journal.inode,
                  "index": self._stat_key()}
        atomic_write(self.sync_path, json.dumps(record).encode(), 0o644)
