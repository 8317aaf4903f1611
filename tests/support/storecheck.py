"""Every store a test leaves behind is sound: the suite runs ``fsck`` on each after every test.

A test that leaves a store damaged on purpose (what fsck must report, say) is marked
``@pytest.mark.leaves_damaged_store``, and its stores are not checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.fsck import fsck
from gadgetstore.engine.store import Store

_NOT_STORES = frozenset({"blobs", "ingest", "quarantine"})  # a store's own directories hold no store


def stores_under(root: Path) -> list[Path]:
    """Every directory under ``root`` holding an ``oci-layout`` (a store, or a layout another tool
    wrote), without looking inside a store or crossing into another file system (a mount)."""
    if not root.is_dir():
        return []
    device = os.stat(root).st_dev
    found: list[Path] = []
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            continue
        if any(entry.name == "oci-layout" for entry in entries):
            found.append(directory)
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_dev == device:
                    pending.append(Path(entry.path))
            except OSError:
                continue
    return sorted(found)


def unsound_stores(root: Path) -> dict[Path, list[str]]:
    """The stores under ``root`` that fsck finds problems in, with the problems."""
    out: dict[Path, list[str]] = {}
    for store_root in stores_under(root):
        try:
            problems = fsck(Store.open(store_root, readonly=True, allow_damage=True)).problems
        except GadgetStoreError as err:
            problems = [f"cannot be checked: {err}"]
        if problems:
            out[store_root] = problems
    return out
