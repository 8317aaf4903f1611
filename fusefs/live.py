"""Which kernel entries a new journal snapshot makes wrong (pure; the adapter sends the notices)."""

from __future__ import annotations

from gadgetstore.engine.errors import GadgetStoreError

from .inodes import InodeTable
from .model import FsModel, Missing, NotFound


def stale_entries(table: InodeTable, model: FsModel) -> list[tuple[int, str, int]]:
    """(parent inode, name, old child inode) for every handed-out name that now means something else.

    Deepest first, so a removed repository's tags are dropped before the repository itself.
    Names the model cannot check without loading (a by-digest probe) are left to their short
    kernel timeout.
    """
    out: list[tuple[int, str, int]] = []
    for parent, parent_node, name, child in table.tracked():
        try:
            key = model.child(parent_node, name).key
        except NotFound:
            key = None
        except (Missing, GadgetStoreError):
            continue
        if key != table.node(child).key:
            out.append((parent, name, child))
    out.sort(key=lambda e: -len(table.node(e[0]).path))
    return out
