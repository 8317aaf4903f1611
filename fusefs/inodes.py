"""Inode numbers and lookup counts: the kernel's side of the contract, kept apart from pyfuse3.

An inode stays in the table while the kernel holds lookups on it (``lookup``/``readdir`` add,
``forget`` subtracts) and the number comes from the node key, so the same object keeps the same
number even after the kernel forgot it. For directories that follow the journal the table also
remembers which names it handed out, so a change can invalidate exactly those kernel entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .nodes import TRACKED_KINDS, Node, NodeKey, inode_hint

ROOT_INODE = 1


@dataclass
class _Entry:
    node: Node
    nlookup: int = 0
    links: set[tuple[int, str]] = field(default_factory=set)
    parent: int = ROOT_INODE  # the directory of its latest lookup: what ``..`` lists


class InodeTable:
    def __init__(self, root: Node) -> None:
        self._entries: dict[int, _Entry] = {ROOT_INODE: _Entry(root, 1)}
        self._by_key: dict[NodeKey, int] = {root.key: ROOT_INODE}
        self._names: dict[int, dict[str, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ino: int) -> bool:
        return ino in self._entries

    def node(self, ino: int) -> Node:
        """The node of a live inode; KeyError when the kernel should not know this number."""
        return self._entries[ino].node

    def nlookup(self, ino: int) -> int:
        entry = self._entries.get(ino)
        return entry.nlookup if entry else 0

    def assign(self, node: Node) -> int:
        """The inode number of ``node`` (entered with no lookups until :meth:`remember`)."""
        ino = self._by_key.get(node.key)
        if ino is not None:
            return ino
        ino = inode_hint(node.key)
        while ino in self._entries or ino <= ROOT_INODE:  # a hash collision: probe the next number
            ino = (ino + 1) & ((1 << 63) - 1)
        self._entries[ino] = _Entry(node)
        self._by_key[node.key] = ino
        return ino

    def remember(self, ino: int, parent: int, name: str) -> None:
        """The kernel now has a lookup on ``ino`` under ``parent``/``name``."""
        entry = self._entries[ino]
        entry.nlookup += 1
        entry.parent = parent
        parent_entry = self._entries.get(parent)
        if parent_entry is not None and parent_entry.node.kind in TRACKED_KINDS:
            self._names.setdefault(parent, {})[name] = ino
            entry.links.add((parent, name))

    def parent(self, ino: int) -> int:
        """The directory ``ino`` was last looked up in (``..``), if the kernel still knows it."""
        entry = self._entries.get(ino)
        return entry.parent if entry is not None and entry.parent in self._entries else ROOT_INODE

    def replace(self, ino: int, node: Node) -> None:
        """Give a live inode a fresh node of the same key (its attributes changed, not its identity)."""
        entry = self._entries[ino]
        assert entry.node.key == node.key, "a new key is a new inode"
        entry.node = node

    def discard_unused(self, ino: int) -> None:
        """Drop an inode assigned for a reply the kernel did not take."""
        entry = self._entries.get(ino)
        if entry is not None and entry.nlookup == 0 and ino != ROOT_INODE:
            self._drop(ino, entry)

    def forget(self, ino: int, count: int) -> None:
        entry = self._entries.get(ino)
        if entry is None or ino == ROOT_INODE:
            return
        entry.nlookup -= count
        if entry.nlookup <= 0:
            self._drop(ino, entry)

    def _drop(self, ino: int, entry: _Entry) -> None:
        del self._entries[ino]
        if self._by_key.get(entry.node.key) == ino:
            del self._by_key[entry.node.key]
        for parent, name in entry.links:
            self.untrack(parent, name, ino)
        self._names.pop(ino, None)

    def tracked(self) -> Iterator[tuple[int, Node, str, int]]:
        """(parent inode, parent node, name, child inode) for names handed out in tracked dirs."""
        for parent, names in list(self._names.items()):
            parent_entry = self._entries.get(parent)
            if parent_entry is None:
                continue
            for name, child in list(names.items()):
                yield parent, parent_entry.node, name, child

    def untrack(self, parent: int, name: str, child: int) -> None:
        names = self._names.get(parent)
        if names is not None and names.get(name) == child:
            del names[name]
            if not names:
                del self._names[parent]
        entry = self._entries.get(child)
        if entry is not None:
            entry.links.discard((parent, name))
