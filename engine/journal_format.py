"""The index journal's record format and the state it replays into (pure, no I/O).

A journal is a header line followed by one line per committed transaction::

    gadgetstore-journal 1
    <crc32 as 8 hex digits> <compact JSON {"ops": [...]}>

A line counts only when it is complete (ends in a newline) and its checksum matches; replay stops
at the first line that does not, so a torn append or a damaged tail is detected, reported and cut,
never trusted. Operations:

    {"op": "tag",   "ref": REF, "desc": DESCRIPTOR, "time_ns": NS}   REF now points at DESCRIPTOR
    {"op": "untag", "ref": REF}
    {"op": "pin",   "desc": DESCRIPTOR}                keep an untagged root (e.g. a signature)
    {"op": "unpin", "digest": DIGEST}

``time_ns`` (nanoseconds since the epoch) is when the tag was committed, stamped by the append;
records written before it existed have none. Re-tagging a reference to the image it already
has keeps the earlier time, so a re-pull does not make an old image look new.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from . import mediatypes as mt
from .descriptor import Descriptor
from .digest import Digest

HEADER = b"gadgetstore-journal 1\n"
JOURNAL_LENGTH_ANNOTATION = "io.gadgetstore.journal.length"

Op = dict[str, Any]


def stamped(ops: list[Op], time_ns: int) -> list[Op]:
    """``ops`` with ``time_ns`` on every tag operation that has none (the commit time)."""
    return [{**op, "time_ns": time_ns} if op.get("op") == "tag" and "time_ns" not in op else op for op in ops]


def encode_transaction(ops: list[Op]) -> bytes:
    payload = json.dumps({"ops": ops}, separators=(",", ":"), sort_keys=True).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


@dataclass
class Replay:
    """Transactions decoded from a journal, where the valid part ends, and why it ended early."""

    transactions: list[list[Op]]
    valid_length: int
    damage: str | None = None
    torn: bool = False
    """True when the damage is only an unfinished final line: an append cut short, safe to cut."""


def decode(data: bytes, expect_header: bool = True) -> Replay:
    """Decode whole, checksummed lines; positions are relative to ``data``."""
    pos = 0
    if expect_header:
        if not data.startswith(HEADER):
            if HEADER.startswith(data):
                return Replay([], 0, "journal header is incomplete" if data else None, torn=bool(data))
            return Replay([], 0, "journal header is missing or damaged")
        pos = len(HEADER)
    transactions: list[list[Op]] = []
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            return Replay(transactions, pos, f"torn record at byte {pos} (no end of line)", torn=True)
        line = data[pos:end]
        ops = _decode_line(line)
        if ops is None:
            return Replay(transactions, pos, f"corrupt record at byte {pos} (checksum or syntax)")
        transactions.append(ops)
        pos = end + 1
    return Replay(transactions, pos)


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
        ops = _decode_line(line)
        if ops is None:
            dropped += 1
        else:
            kept.append(ops)
    return kept, dropped


def _decode_line(line: bytes) -> list[Op] | None:
    if len(line) < 10 or line[8:9] != b" ":
        return None
    try:
        crc = int(line[:8], 16)
    except ValueError:
        return None
    payload = line[9:]
    if zlib.crc32(payload) != crc:
        return None
    try:
        obj = json.loads(payload)
    except ValueError:
        return None
    ops = obj.get("ops") if isinstance(obj, dict) else None
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        return None
    return ops


@dataclass
class IndexState:
    """What the journal says: tags (reference → descriptor JSON) and pinned untagged roots."""

    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag_times: dict[str, int] = field(default_factory=dict)
    """When each tag got its current descriptor (ns since the epoch), where the journal says."""

    def apply(self, ops: list[Op]) -> None:
        for op in ops:
            kind = op.get("op")
            if kind == "tag":
                ref, desc, when = op["ref"], op["desc"], op.get("time_ns")
                if not (self.tags.get(ref) == desc and ref in self.tag_times):
                    if isinstance(when, int) and not isinstance(when, bool):
                        self.tag_times[ref] = when
                    else:
                        self.tag_times.pop(ref, None)
                self.tags[ref] = desc
            elif kind == "untag":
                self.tags.pop(op["ref"], None)
                self.tag_times.pop(op["ref"], None)
            elif kind == "pin":
                self.pins[op["desc"]["digest"]] = op["desc"]
            elif kind == "unpin":
                self.pins.pop(op["digest"], None)
            else:
                raise ValueError(f"unknown journal operation {kind!r}")

    def snapshot_ops(self) -> list[Op]:
        """The operations that rebuild this state from nothing (what compaction writes)."""
        ops: list[Op] = []
        for ref, desc in sorted(self.tags.items()):
            op: Op = {"op": "tag", "ref": ref, "desc": desc}
            if ref in self.tag_times:
                op["time_ns"] = self.tag_times[ref]
            ops.append(op)
        ops.extend({"op": "pin", "desc": desc} for _, desc in sorted(self.pins.items()))
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


class Transaction:
    """Operations collected under the index lock, applied as one change (one journal record, or one
    rewrite of a shared layout's index.json); ``state`` is what they apply to."""

    def __init__(self, state: IndexState) -> None:
        self.state = state
        self.ops: list[Op] = []

    def tag(self, ref: str, desc: Descriptor) -> None:
        self.ops.append({"op": "tag", "ref": ref, "desc": desc.to_json()})

    def untag(self, ref: str) -> None:
        self.ops.append({"op": "untag", "ref": ref})

    def pin(self, desc: Descriptor) -> None:
        self.ops.append({"op": "pin", "desc": desc.to_json()})

    def unpin(self, digest: Digest) -> None:
        self.ops.append({"op": "unpin", "digest": str(digest)})


def replay_state(replay: Replay, state: IndexState | None = None) -> IndexState:
    state = state or IndexState()
    for ops in replay.transactions:
        state.apply(ops)
    return state
