"""The index journal's record format and the state it replays into (pure, no I/O).

A journal is a header line followed by one line per committed transaction::

    gadgetstore-journal 1
    <crc32 as 8 hex digits> <compact JSON {"ops": [...]}>

A line counts only when it is complete (ends in a newline) and its checksum matches; replay stops
at the first line that does not, so a torn append or a damaged tail is detected, reported and cut,
never trusted. Operations, read into the typed values :class:`Tag`, :class:`Untag`, :class:`Pin`
and :class:`Unpin` (a checksummed record holding anything else is damage, as a bad checksum is)::

    {"op": "tag",   "ref": REF, "desc": DESCRIPTOR, "time_ns": NS}   REF now points at DESCRIPTOR
    {"op": "untag", "ref": REF}
    {"op": "pin",   "desc": DESCRIPTOR}                keep an untagged root (e.g. a signature)
    {"op": "unpin", "digest": DIGEST}

``time_ns`` (nanoseconds since the epoch) is when the tag was committed, stamped by the append;
a record may lack it (the tag then has no known time). Re-tagging a reference to the image it already
has keeps the earlier time, so a re-pull does not make an old image look new.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from . import mediatypes as mt
from .descriptor import Descriptor
from .errors import InvalidManifest
from .gojson import plain_loads

HEADER = b"gadgetstore-journal 1\n"
JOURNAL_LENGTH_ANNOTATION = "io.gadgetstore.journal.length"

DescriptorJson = dict[str, Any]
"""A descriptor as the journal and index.json hold it (one :meth:`Descriptor.from_json` takes)."""

# Operations are values, never changed once made (:func:`stamped` makes copies). They are not
# frozen dataclasses only because replay makes one per tag, and frozen ones are slower to make.


@dataclass(slots=True)
class Tag:
    """``ref`` now points at ``desc``; ``time_ns`` is when that was committed (None: not stamped yet)."""

    ref: str
    desc: DescriptorJson
    time_ns: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": "tag", "ref": self.ref, "desc": self.desc}
        if self.time_ns is not None:
            out["time_ns"] = self.time_ns
        return out


@dataclass(slots=True)
class Untag:
    ref: str

    def to_json(self) -> dict[str, Any]:
        return {"op": "untag", "ref": self.ref}


@dataclass(slots=True)
class Pin:
    """Keep an untagged root (an untagged image, a signature)."""

    desc: DescriptorJson

    @property
    def digest(self) -> str:
        return str(self.desc["digest"])

    def to_json(self) -> dict[str, Any]:
        return {"op": "pin", "desc": self.desc}


@dataclass(slots=True)
class Unpin:
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"op": "unpin", "digest": self.digest}


Op = Tag | Untag | Pin | Unpin


class BadOperation(ValueError):
    """A record's operation is not one this format defines (a checksummed record that says this is damage).

    Internal: :func:`decode` and :func:`salvage` turn it into a damaged record of their result (which the
    journal reports as a :class:`~gadgetstore.engine.errors.StoreError`); it never reaches a user as itself."""


def op_from_json(obj: object) -> Op:
    """One operation of a record; raises :class:`BadOperation` saying what is wrong with it."""
    if not isinstance(obj, dict):
        raise BadOperation("an operation is not an object")
    kind = obj.get("op")
    if kind == "tag":
        ref, desc, when = obj.get("ref"), obj.get("desc"), obj.get("time_ns")
        if not isinstance(ref, str):
            raise BadOperation("tag without a ref")
        if type(when) is not int:
            when = None
        return Tag(ref, _descriptor(desc, kind), when)
    if kind == "pin":
        return Pin(_descriptor(obj.get("desc"), kind))
    key = "ref" if kind == "untag" else "digest" if kind == "unpin" else None
    if key is None:
        raise BadOperation(f"unknown operation {str(kind)[:40]!r}")
    value = obj.get(key)
    if not isinstance(value, str):
        raise BadOperation(f"{kind} without a {key}")
    return Untag(value) if kind == "untag" else Unpin(value)


def _descriptor(desc: object, kind: str) -> DescriptorJson:
    """``desc`` when it is a descriptor :meth:`Descriptor.from_json` takes: a tag or pin that every
    reader of the state would refuse (a digest that is none) is damage of the record, found here
    where ``fsck --repair`` can drop it, not in each command that reads the tag."""
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
        raise BadOperation(f"{kind} without a descriptor")
    try:
        return Descriptor.checked_json(desc, f"{kind} with a bad descriptor")
    except InvalidManifest as err:
        raise BadOperation(str(err)) from None


def stamped(ops: list[Op], time_ns: int) -> list[Op]:
    """``ops`` with ``time_ns`` on every tag operation that has none (the commit time)."""
    return [replace(op, time_ns=time_ns) if isinstance(op, Tag) and op.time_ns is None else op for op in ops]


def encode_transaction(ops: Iterable[Op]) -> bytes:
    payload = json.dumps({"ops": [op.to_json() for op in ops]}, separators=(",", ":"), sort_keys=True).encode()
    return encode_line(payload)


def encode_line(payload: bytes) -> bytes:
    """One journal line: ``payload`` after its checksum, whatever it holds."""
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


@dataclass
class Replay:
    """Transactions decoded from a journal, where the valid part ends, and why it ended early."""

    transactions: list[list[Op]]
    valid_length: int
    damage: str | None = None
    torn: bool = False
    """True when the damage is only an unfinished final line: an append cut short, safe to cut."""


def decode(data: bytes, offset: int = 0) -> Replay:
    """Decode whole, checksummed lines of a journal read from byte ``offset`` on (from its start, the
    header first); positions, in :attr:`Replay.valid_length` and in the damage, are the file's."""
    pos = 0
    if offset == 0:
        if not data.startswith(HEADER):
            if HEADER.startswith(data):
                return Replay([], 0, "journal header is incomplete" if data else None, torn=bool(data))
            return Replay([], 0, "journal header is missing or damaged")
        pos = len(HEADER)
    transactions: list[list[Op]] = []
    while pos < len(data):
        end = data.find(b"\n", pos)
        at = offset + pos
        if end < 0:
            return Replay(transactions, at, f"torn record at byte {at} (no end of line)", torn=True)
        try:
            transactions.append(_decode_line(data[pos:end]))
        except BadOperation as err:
            return Replay(transactions, at, f"corrupt record at byte {at} ({err})")
        pos = end + 1
    return Replay(transactions, offset + pos)


def salvage(data: bytes) -> tuple[list[list[Op]], int]:
    """Every intact transaction, skipping damaged lines (and a damaged header); returns (kept, dropped).

    For ``fsck --repair`` only: normal replay never skips a damaged record.
    """
    body = data[len(HEADER):] if data.startswith(HEADER) else data[data.find(b"\n") + 1 :]
    kept: list[list[Op]] = []
    dropped = 0
    for line in body.split(b"\n"):
        if not line:
            continue
        try:
            kept.append(_decode_line(line))
        except BadOperation:
            dropped += 1
    return kept, dropped


def _decode_line(line: bytes) -> list[Op]:
    """The operations of one record; raises :class:`BadOperation` for a line that is not a whole one."""
    if len(line) < 10 or line[8:9] != b" ":
        raise BadOperation("checksum or syntax")
    try:
        crc = int(line[:8], 16)
    except ValueError:
        raise BadOperation("checksum or syntax") from None
    payload = line[9:]
    if zlib.crc32(payload) != crc:
        raise BadOperation("checksum or syntax")
    try:
        obj = plain_loads(payload)
    except ValueError as err:
        raise BadOperation(f"not valid JSON ({err})") from None
    ops = obj.get("ops") if isinstance(obj, dict) else None
    if not isinstance(ops, list):
        raise BadOperation("a record without a list of operations")
    return [op_from_json(op) for op in ops]


@dataclass
class IndexState:
    """What the journal says: tags (reference → descriptor JSON) and pinned untagged roots."""

    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag_times: dict[str, int] = field(default_factory=dict)
    """When each tag got its current descriptor (ns since the epoch), where the journal says."""

    def apply(self, ops: Iterable[Op]) -> None:
        for op in ops:
            if isinstance(op, Tag):
                if not (self.tags.get(op.ref) == op.desc and op.ref in self.tag_times):
                    if op.time_ns is not None:
                        self.tag_times[op.ref] = op.time_ns
                    else:
                        self.tag_times.pop(op.ref, None)
                self.tags[op.ref] = op.desc
            elif isinstance(op, Untag):
                self.tags.pop(op.ref, None)
                self.tag_times.pop(op.ref, None)
            elif isinstance(op, Pin):
                self.pins[op.digest] = op.desc
            else:
                self.pins.pop(op.digest, None)

    def snapshot_ops(self) -> list[Op]:
        """The operations that rebuild this state from nothing (what compaction writes)."""
        ops: list[Op] = [Tag(ref, desc, self.tag_times.get(ref)) for ref, desc in sorted(self.tags.items())]
        ops.extend(Pin(desc) for _, desc in sorted(self.pins.items()))
        return ops

    def oci_index(self, journal_length: int) -> dict[str, Any]:
        """The OCI layout ``index.json`` for this state: tags carry ``ref.name`` as ig writes it."""
        manifests: list[dict[str, Any]] = []
        for ref, desc in sorted(self.tags.items()):
            entry = dict(desc)
            annotations = dict(entry.get("annotations") or {})
            annotations[mt.ANNOTATION_REF_NAME] = ref
            entry["annotations"] = annotations
            manifests.append(entry)
        manifests.extend(desc for _, desc in sorted(self.pins.items()))
        return {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": manifests,
            "annotations": {JOURNAL_LENGTH_ANNOTATION: str(journal_length)},
        }


def replay_state(replay: Replay, state: IndexState | None = None) -> IndexState:
    state = state or IndexState()
    for ops in replay.transactions:
        state.apply(ops)
    return state
