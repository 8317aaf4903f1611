"""Inode numbers and lookup counting (pure)."""

from __future__ import annotations

import pytest

from gadgetstore.fusefs import inodes
from gadgetstore.fusefs.inodes import ROOT_INODE, InodeTable
from gadgetstore.fusefs.nodes import ROOT_NODE, Kind, Node, inode_hint


def _ns(*path: str) -> Node:
    return Node(("ns", path), Kind.NAMESPACE, path)


def _file(*path: str) -> Node:
    return Node(("data", path), Kind.FILE, path, size=1, data=b"x")


def test_numbers_are_deterministic_and_survive_forget() -> None:
    table = InodeTable(ROOT_NODE)
    ino = table.assign(_ns("a"))
    assert ino == inode_hint(("ns", ("a",)))
    table.remember(ino, ROOT_INODE, "a")
    table.forget(ino, 1)
    assert ino not in table
    assert table.assign(_ns("a")) == ino
    assert InodeTable(ROOT_NODE).assign(_ns("a")) == ino


def test_lookup_counts_balance() -> None:
    table = InodeTable(ROOT_NODE)
    ino = table.assign(_ns("a"))
    for _ in range(3):
        table.remember(ino, ROOT_INODE, "a")
    table.forget(ino, 2)
    assert table.nlookup(ino) == 1
    table.forget(ino, 1)
    assert ino not in table
    table.forget(ino, 1)  # a stray forget must not raise
    table.forget(ROOT_INODE, 5)
    assert table.node(ROOT_INODE) is ROOT_NODE


def test_unused_assignment_is_discarded() -> None:
    table = InodeTable(ROOT_NODE)
    ino = table.assign(_file("f"))
    table.discard_unused(ino)
    assert ino not in table
    assert len(table) == 1


def test_collision_probes_the_next_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inodes, "inode_hint", lambda key: 1000)
    table = InodeTable(ROOT_NODE)
    a, b = table.assign(_ns("a")), table.assign(_ns("b"))
    assert (a, b) == (1000, 1001)
    assert table.node(b).path == ("b",)


def test_names_are_tracked_only_in_journal_driven_dirs() -> None:
    table = InodeTable(ROOT_NODE)
    dir_ino = table.assign(_ns("a"))
    table.remember(dir_ino, ROOT_INODE, "a")
    image = Node(("image", ("a", "v1")), Kind.IMAGE, ("a", "v1"))
    image_ino = table.assign(image)
    table.remember(image_ino, dir_ino, "v1")
    file_ino = table.assign(_file("a", "v1", "digest"))
    table.remember(file_ino, image_ino, "digest")  # IMAGE dirs are immutable: not tracked
    assert [(p, n, c) for p, _node, n, c in table.tracked()] == [(ROOT_INODE, "a", dir_ino), (dir_ino, "v1", image_ino)]
    table.forget(image_ino, 1)
    assert [n for _p, _node, n, _c in table.tracked()] == ["a"]
