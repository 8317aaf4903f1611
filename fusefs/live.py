"""Which kernel entries and attributes a new journal snapshot makes wrong (pure; the adapter
sends the notices)."""

from __future__ import annotations

from gadgetstore.engine.errors import GadgetStoreError

from .inodes import InodeTable
from .model import FsModel, Missing, NotFound
from .nodes import Kind, Node


def stale_entries(table: InodeTable, model: FsModel) -> list[tuple[int, str, int]]:
    """(parent inode, name, old child inode) for every handed-out name that now means something else.

    Deepest first, so a removed repository's tags are dropped before the repository itself.
    Names the model cannot check without loading (a by-digest probe) are left to their short
    kernel timeout.
    """
    out: list[tuple[int, str, int]] = []
    for parent, parent_node, name, child in table.tracked():
        try:
            key = model.entry_key(parent_node, name)
        except (Missing, GadgetStoreError):
            continue
        if key != table.node(child).key:
            out.append((parent, name, child))
    out.sort(key=lambda e: -len(table.node(e[0]).path))
    return out


def retimed_dirs(table: InodeTable, model: FsModel) -> list[tuple[int, Node]]:
    """(inode, node with the new time) for each directory above images, known to the kernel, whose
    time changed (a tag below it was committed): same object, new ``stat``."""
    out: list[tuple[int, Node]] = []
    for _parent, parent_node, name, child in table.tracked():
        old = table.node(child)
        if old.kind is not Kind.NAMESPACE:
            continue
        try:
            new = model.child(parent_node, name)
        except (NotFound, Missing, GadgetStoreError):
            continue
        if new.key == old.key and new.mtime_ns != old.mtime_ns:
            out.append((child, new))
    return out
