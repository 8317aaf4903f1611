"""``gadgetstore fsck``: re-hash every blob, check the journal, index.json and every reference.

What ``fsck`` reports and what ``fsck --repair`` does about it (``repair`` then ``fsck`` is clean):

==============================================  =====================================================
finding                                         repair
==============================================  =====================================================
index journal damaged                           rebuilt from every intact record (damaged one kept)
index.json missing, not JSON, out of step       rewritten from the journal
unexpected entry under blobs/                   moved to quarantine/
blob not a regular file (symlink, dir, fifo)    moved to quarantine/
blob unreadable, or its content has another     moved to quarantine/
digest (damaged, truncated, grown)
tag or pin reaching a missing, wrong-sized or   untagged / unpinned, with a line naming it: pull or
unreadable blob (also one just quarantined)     import the image again
note: blob writable                             made read-only
note: unfinished ingest files                   removed, when no writer holds the gc lease
note: index.json lags the journal (a pull)      rewritten from the journal
==============================================  =====================================================

In a layout shared with ig, index.json is the truth and there is no journal; what differs:

==============================================  =====================================================
finding                                         repair
==============================================  =====================================================
untagged entry whose blob is missing (ig's      the entry is dropped
remove leaves these; they turn ig's gc off):
a note
untagged referrer whose subject no tag          the entry is dropped
reaches (ig's remove would loop for ever)
tagged or untagged entry reaching a missing,    the entry is dropped, with a line naming it
wrong-sized or unreadable blob
note: unfinished ingest files                   gadgetstore's own removed; oras's (a running ig
                                                pull) left alone
==============================================  =====================================================
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import journal_format as jf
from .blobstore import BlobNotFound, BlobStore
from .descriptor import Descriptor, children, is_document, walk_graph
from .digest import Digest
from .errors import GadgetStoreError
from .fsutil import atomic_write, ensure_real_dir, fsync_dir
from .gojson import go_loads
from .store import Store

QUARANTINE = "quarantine"


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


# -- checking --------------------------------------------------------------------------------------


def fsck(store: Store) -> FsckReport:
    """Check ``store``; writes nothing (a shared layout is read as any reading command reads it)."""
    report = FsckReport()
    if not store.shared:
        _check_journal_and_index(store, report)
    damaged = _check_blobs(store, report)
    _check_references(store, report, damaged)
    if store.shared:
        for entry in _loose_entries(store):
            (report.notes if entry.note else report.problems).append(entry.finding)
    stale = store.blobs.own_ingest_files() if store.shared else store.blobs.ingest_files()
    if stale:
        report.notes.append(f"{len(stale)} unfinished ingest file(s) in ingest/ (gc removes them)")
    return report


def _check_journal_and_index(store: Store, report: FsckReport) -> None:
    # Shared: no writer changes the journal or index.json meanwhile, and no lock file is created.
    with store.locks.shared():
        store.journal.refresh()
        if store.journal.damage:
            report.problems.append(f"index journal: {store.journal.damage}")
        expected = store.journal.state.oci_index(store.journal.length)
        try:
            actual = go_loads(store.index_path.read_bytes())
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


def _blob_problem(store: Store, digest: Digest) -> str | None:
    """What is wrong with the file of ``digest`` (completing "blob <digest> …"), or None."""
    try:
        st = os.lstat(store.blobs.path(digest))
    except FileNotFoundError:
        return None  # gone meanwhile (gc): nothing left to be wrong
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    try:
        actual = store.blobs.rehash(digest)
    except (OSError, GadgetStoreError) as err:
        return f"cannot be read ({getattr(err, 'strerror', None) or err})"
    if actual != digest:
        return "is damaged: its content has another digest"
    return None


def _check_blobs(store: Store, report: FsckReport) -> set[Digest]:
    damaged: set[Digest] = set()
    for path in store.blobs.stray_entries():
        report.problems.append(f"unexpected entry {path.relative_to(store.root)} under blobs/")
    for digest in store.blobs.iter_digests():
        problem = _blob_problem(store, digest)
        if problem is not None:
            report.problems.append(f"blob {digest} {problem}")
            damaged.add(digest)
            continue
        st = store.blobs.stat(digest)
        if st is None:
            continue
        report.blobs_checked += 1
        report.bytes_checked += st.st_size
        if st.st_mode & 0o222:
            report.notes.append(f"blob {digest} is writable (expected read-only)")
    return damaged


@dataclass(frozen=True)
class _Root:
    name: str  # "tag REF" or "pinned DIGEST", as problems are reported
    desc: Descriptor
    drop: jf.Op  # the journal operation that removes it
    problems: tuple[str, ...]  # what is wrong in the graph it reaches


def _roots(store: Store, damaged: set[Digest]) -> list[_Root]:
    """Every tag and pin with the problems of the graph it reaches; each node is examined once.
    (In a shared layout an untagged entry whose own blob is missing is left to :func:`_loose_entries`.)"""
    named: list[tuple[str, Descriptor, jf.Op]] = []
    for ref, raw in sorted(store.state.tags.items()):
        named.append((f"tag {ref}", Descriptor.from_json(raw, f"tag {ref}"), jf.Untag(ref)))
    pin_name = "untagged entry" if store.shared else "pinned"
    named.extend((f"{pin_name} {pin.digest}", pin, jf.Unpin(str(pin.digest))) for pin in store.pins()
                 if not (store.shared and not store.blobs.has(pin.digest)))
    examined: dict[tuple[Digest, int, str], tuple[str | None, list[Descriptor]]] = {}
    return [_Root(name, root, drop, _graph_problems(store, damaged, examined, root)) for name, root, drop in named]


def _graph_problems(store: Store, damaged: set[Digest],
                    examined: dict[tuple[Digest, int, str], tuple[str | None, list[Descriptor]]],
                    root: Descriptor) -> tuple[str, ...]:
    problems: list[str] = []

    def expand(desc: Descriptor) -> list[Descriptor]:
        key = (desc.digest, desc.size, desc.media_type)
        if key not in examined:
            examined[key] = _examine(store, damaged, desc)
        problem, kids = examined[key]
        if problem is not None:
            problems.append(problem)
        return kids

    walk_graph([root], expand)
    return tuple(problems)


def _examine(store: Store, damaged: set[Digest], desc: Descriptor) -> tuple[str | None, list[Descriptor]]:
    """A missing or wrong-sized blob, or an unreadable document; else the children of a sound one."""
    st = store.blobs.stat(desc.digest)
    if st is None:
        return f"blob {desc.digest} is missing", []
    if st.st_size != desc.size:
        return f"blob {desc.digest} has {st.st_size} bytes, descriptor says {desc.size}", []
    if desc.digest in damaged or not is_document(desc):
        return None, []  # a damaged blob is reported as such, once
    try:
        return None, children(store.read_document(desc), f"manifest {desc.digest}")
    except (GadgetStoreError, BlobNotFound) as err:
        return str(err), []


@dataclass(frozen=True)
class _LooseEntry:
    what: str  # names the entry, for the repair's line
    why: str
    note: bool  # ig works with it (a note), or it breaks something of ig's (a problem)
    drop: jf.Op

    @property
    def finding(self) -> str:
        return f"{self.what}: {self.why}"


def _loose_entries(store: Store) -> list[_LooseEntry]:
    """Untagged entries of a shared layout that oras tolerates but that hurt ig: one whose blob is
    missing (ig's gc stops at it without a word, so nothing is collected any more), and a referrer
    whose subject no tag reaches (ig's gc loops for ever over it: oras gcIndex)."""
    out: list[_LooseEntry] = []
    tagged = [Descriptor.from_json(raw, f"tag {ref}") for ref, raw in store.state.tags.items()]

    def readable_children(desc: Descriptor) -> list[Descriptor]:
        try:
            return children(store.read_document(desc), f"manifest {desc.digest}") if is_document(desc) else []
        except GadgetStoreError:  # missing or damaged: reported with the tag that reaches it
            return []

    alive = set(walk_graph(tagged, readable_children))
    for pin in store.pins():
        drop = jf.Unpin(str(pin.digest))
        if not store.blobs.has(pin.digest):
            out.append(_LooseEntry(f"untagged entry {pin.digest}", "its blob is missing (ig's image remove leaves "
                                   "such entries, and they stop ig's own gc); fsck --repair drops it", True, drop))
            continue
        subj = store.subject_of(pin)
        if subj is not None and subj not in alive:
            out.append(_LooseEntry(f"untagged referrer {pin.digest}", f"its subject {subj} is reached by no tag "
                                   "(ig's image remove would never end)", False, drop))
    return out


def _check_references(store: Store, report: FsckReport, damaged: set[Digest]) -> None:
    reported: set[str] = set()
    for root in _roots(store, damaged):
        report.references_checked += 1
        for problem in root.problems:
            if problem not in reported:  # a shared part of several graphs, reported under the first
                reported.add(problem)
                report.problems.append(f"{root.name}: {problem}")


# -- repairing -------------------------------------------------------------------------------------


def repair_root(root: Path) -> list[str]:
    """``fsck --repair`` on the store at ``root``: what :func:`repair` does, after moving entries
    under blobs/ that are not blobs out of the way, so that the store opens again (a
    ``blobs/sha256`` that is a symlink or a file stops every open for writing)."""
    actions = _quarantine_strays(root)
    return actions + repair(Store.open(root, allow_damage=True))


def repair(store: Store) -> list[str]:
    """Repair everything :func:`fsck` reports (see the module docstring); returns what was done,
    one line per action. Damaged blobs go to ``quarantine/``, so a re-pull or re-import fetches
    them again."""
    if store.shared:
        return _repair_layout(store)
    actions: list[str] = []
    with store.locks.exclusive():
        store.journal.refresh()
        if store.journal.damage is not None:
            data = store.journal.path.read_bytes()
            backup = _free_name(store.root / f"index.journal.damaged-{int(time.time())}")
            atomic_write(backup, data, 0o644)  # durable before the journal is replaced
            kept, dropped = jf.salvage(data)
            store.journal.replace(kept)
            actions.append(f"rebuilt the index journal from {len(kept)} intact record(s), dropped {dropped}; "
                           f"the damaged journal is kept as {backup.name}")
        actions += _quarantine_strays(store.root)
        store.blobs.create_dirs()
        actions += _repair_blobs(store)
        dropped_roots = [root for root in _roots(store, set()) if root.problems]
        store.record_repair([root.drop for root in dropped_roots])
        actions += [f"removed {root.name}: {root.problems[0]}; pull or import it again" for root in dropped_roots]
    actions += _remove_ingest_leftovers(store)
    return actions


def _repair_layout(store: Store) -> list[str]:
    """:func:`repair` of a shared layout: under ig's lock, every entry fsck finds fault with is
    dropped from index.json; every other entry keeps its bytes."""
    actions: list[str] = []
    with store.settled():
        actions += _quarantine_strays(store.root)
        actions += _repair_blobs(store)
        dropped_roots = [root for root in _roots(store, set()) if root.problems]
        loose = _loose_entries(store)
        store.record_repair([root.drop for root in dropped_roots] + [entry.drop for entry in loose])
        actions += [f"removed {root.name}: {root.problems[0]}; pull or import it again" for root in dropped_roots]
        actions += [f"removed the {entry.what} ({entry.why.split(' (')[0]})" for entry in loose]
    actions += _remove_ingest_leftovers(store)
    return actions


def _free_name(path: Path) -> Path:
    """``path``, or ``path.2``, ``path.3`` … whichever does not exist yet."""
    target, n = path, 1
    while os.path.lexists(target):
        n += 1
        target = path.with_name(f"{path.name}.{n}")
    return target


def _quarantine(store_root: Path, path: Path, name: str) -> Path:
    """Move ``path`` (whatever it is: file, directory, symlink, fifo) into quarantine/ as ``name``,
    durably: both directories are fsync'd, so a crash cannot bring it back under blobs/ (where gc
    would delete it) after the repair said it was kept."""
    quarantine = store_root / QUARANTINE
    if ensure_real_dir(quarantine, 0o700):  # refused when a symlink: it would move the damage elsewhere
        fsync_dir(store_root)
    target = _free_name(quarantine / name)
    os.rename(path, target)
    fsync_dir(quarantine)
    fsync_dir(path.parent)
    return target


def _quarantine_strays(store_root: Path) -> list[str]:
    actions: list[str] = []
    for path in BlobStore(store_root).stray_entries():
        relative = path.relative_to(store_root)
        moved = _quarantine(store_root, path, "stray-" + "-".join(relative.parts))
        actions.append(f"moved {relative} (not a blob) to {QUARANTINE}/{moved.name}")
    return actions


def _repair_blobs(store: Store) -> list[str]:
    actions: list[str] = []
    for digest in list(store.blobs.iter_digests()):
        problem = _blob_problem(store, digest)
        path = store.blobs.path(digest)
        if problem is not None:
            moved = _quarantine(store.root, path, f"{digest.algorithm}-{digest.hex}")
            actions.append(f"moved blob {digest}, which {problem}, to {QUARANTINE}/{moved.name}")
            continue
        st = store.blobs.stat(digest)
        if st is not None and st.st_mode & 0o222:
            os.chmod(path, 0o444)
            actions.append(f"made blob {digest} read-only")
    return actions


def _remove_ingest_leftovers(store: Store) -> list[str]:
    """Unfinished ingest files, unless a writer (holding the gc lease) may still be writing them."""
    leftovers = store.blobs.own_ingest_files() if store.shared else store.blobs.ingest_files()
    if not leftovers:
        return []
    with store.locks.try_collecting() as held:
        if not held:
            return []
        removed = 0
        for path in leftovers:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                _quarantine(store.root, path, f"ingest-{path.name}")
                removed += 1
    return [f"removed {removed} unfinished ingest file(s)"]
