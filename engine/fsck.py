"""``gadgetstore fsck``: re-hash every blob, check the journal, index.json and every reference."""

from __future__ import annotations

import functools
import json
import os
import stat
import time
from dataclasses import dataclass, field

from . import journal_format as jf
from .blobstore import BlobNotFound
from .descriptor import Descriptor, children, is_document, walk_graph
from .digest import Digest
from .errors import GadgetStoreError
from .store import Store


@dataclass
class FsckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blobs_checked: int = 0
    bytes_checked: int = 0
    references_checked: int = 0

    @property
    def clean(self) -> bool:
        return not self.problems


def repair(store: Store) -> list[str]:
    """Make a damaged store usable again; returns what was done, one line per action.

    A damaged journal is kept as ``index.journal.damaged-<time>`` and rebuilt from every intact
    record; damaged blobs are moved to ``quarantine/`` so a re-pull or re-import fetches them again;
    index.json is rewritten from the journal.
    """
    actions: list[str] = []
    with store._locked():
        store.journal.refresh()
        if store.journal.damage is not None:
            data = store.journal.path.read_bytes()
            backup = store.root / f"index.journal.damaged-{int(time.time())}"
            backup.write_bytes(data)
            kept, dropped = jf.salvage(data)
            store.journal.replace(kept)
            actions.append(f"rebuilt the index journal from {len(kept)} intact record(s), dropped {dropped}; "
                           f"the damaged journal is kept as {backup.name}")
        for digest in list(store.blobs.iter_digests()):
            if store.blobs.rehash(digest) != digest:
                quarantine = store.root / "quarantine"
                quarantine.mkdir(mode=0o700, exist_ok=True)
                os.replace(store.blobs.path(digest), quarantine / f"{digest.algorithm}-{digest.hex}")
                actions.append(f"moved damaged blob {digest} to quarantine/; pull or import the image again")
        store._write_index_json()
    return actions


def fsck(store: Store) -> FsckReport:
    report = FsckReport()
    _check_journal_and_index(store, report)
    damaged = _check_blobs(store, report)
    _check_references(store, report, damaged)
    stale = store.blobs.ingest_files()
    if stale:
        report.notes.append(f"{len(stale)} unfinished ingest file(s) in ingest/ (gc removes them)")
    return report


def _check_journal_and_index(store: Store, report: FsckReport) -> None:
    with store._locked():
        store.journal.refresh()
        if store.journal.damage:
            report.problems.append(f"index journal: {store.journal.damage}")
        expected = store.journal.state.oci_index(store.journal.length)
        try:
            actual = json.loads(store.index_path.read_bytes())
        except FileNotFoundError:
            report.problems.append("index.json is missing")
            return
        except ValueError:
            report.problems.append("index.json is not valid JSON")
            return
        if actual != expected and _is_an_earlier_index(store, actual):
            report.notes.append("index.json lags the index journal (a pull under way, or one that was "
                                "interrupted); the pull's end or the next open for writing brings it up to date")
            return
    if actual != expected:
        report.problems.append("index.json is out of step with the index journal")


def _is_an_earlier_index(store: Store, actual: object) -> bool:
    """index.json is exactly what we wrote from an earlier part of this journal (see deferred_index_json)."""
    source = store.index_json_source()
    if source is None:
        return False
    state, length = source
    return length < store.journal.length and state.oci_index(length) == actual


def _check_blobs(store: Store, report: FsckReport) -> set[Digest]:
    damaged: set[Digest] = set()
    for path in store.blobs.stray_entries():
        report.problems.append(f"unexpected entry {path.relative_to(store.root)} under blobs/")
    for digest in store.blobs.iter_digests():
        st = os.lstat(store.blobs.path(digest))
        if not stat.S_ISREG(st.st_mode):
            report.problems.append(f"blob {digest} is not a regular file")
            damaged.add(digest)
            continue
        report.blobs_checked += 1
        report.bytes_checked += st.st_size
        if store.blobs.rehash(digest) != digest:
            report.problems.append(f"blob {digest} is damaged: its content has another digest")
            damaged.add(digest)
        elif st.st_mode & 0o222:
            report.notes.append(f"blob {digest} is writable (expected read-only)")
    return damaged


def _check_references(store: Store, report: FsckReport, damaged: set[Digest]) -> None:
    named: list[tuple[str, Descriptor]] = []
    for ref, raw in sorted(store.journal.state.tags.items()):
        named.append((f"tag {ref}", Descriptor.from_json(raw, f"tag {ref}")))
    named.extend((f"pinned {pin.digest}", pin) for pin in store.pins())
    checked: dict[Digest, Descriptor] = {}
    for name, root in named:
        report.references_checked += 1
        walk_graph([root], functools.partial(_checked_children, store, report, damaged, name), checked)


def _checked_children(store: Store, report: FsckReport, damaged: set[Digest], name: str,
                      desc: Descriptor) -> list[Descriptor]:
    """Report a missing or wrong-sized blob; the children of a sound manifest or index."""
    st = store.blobs.stat(desc.digest)
    if st is None:
        report.problems.append(f"{name}: blob {desc.digest} is missing")
        return []
    if st.st_size != desc.size:
        report.problems.append(f"{name}: blob {desc.digest} has {st.st_size} bytes, descriptor says {desc.size}")
        return []
    if desc.digest in damaged or not is_document(desc):
        return []
    try:
        return children(store.read_document(desc), f"manifest {desc.digest}")
    except (GadgetStoreError, BlobNotFound) as err:
        report.problems.append(f"{name}: {err}")
        return []
