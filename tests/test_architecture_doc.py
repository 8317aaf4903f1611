"""docs/architecture.md names modules by path (or by a name relative to the one before it); each one
must exist, so the map cannot drift from the tree."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DOC = PROJECT / "docs" / "architecture.md"

# Code spans that start with a package: `engine/store.py`, `engine/registry/signatures/`, `engine/ingest`.
MODULE_SPAN = re.compile(r"`((?:engine|cli|fusefs)/[A-Za-z0-9_/]*(?:\.py)?)`")


# Code spans that name a module relative to the one before it: `client.py`, `analysis/entries.py`.
RELATIVE_SPAN = re.compile(r"`((?!engine/|cli/|fusefs/|tests/)[A-Za-z0-9_/]+\.py)`")
TREE = [path.relative_to(PROJECT).as_posix() for top in ("engine", "cli", "fusefs")
        for path in (PROJECT / top).rglob("*.py")]


def named_paths(text: str) -> list[str]:
    return sorted(set(MODULE_SPAN.findall(text)))


def relative_names(text: str) -> list[str]:
    return sorted(set(RELATIVE_SPAN.findall(text)))


def resolves(name: str, tree: list[str]) -> bool:
    """Whether some module of the tree ends in ``name`` (``/client.py``, ``/analysis/entries.py``)."""
    return any(path.endswith(f"/{name}") for path in tree)


def exists(path: str) -> bool:
    target = PROJECT / path
    if path.endswith(".py"):
        return target.is_file()
    bare = path.rstrip("/")
    is_package = (PROJECT / bare / "__init__.py").is_file()
    return is_package or (PROJECT / f"{bare}.py").is_file()


def test_every_module_the_architecture_doc_names_exists() -> None:
    names = named_paths(DOC.read_text(encoding="utf-8"))
    assert len(names) > 40, "the pattern no longer finds the doc's module names"
    assert [name for name in names if not exists(name)] == []
    relative = relative_names(DOC.read_text(encoding="utf-8"))
    assert len(relative) > 10, "the pattern no longer finds the doc's relative module names"
    assert [name for name in relative if not resolves(name, TREE)] == []


def test_a_module_that_does_not_exist_is_caught() -> None:
    assert named_paths("see `engine/nowhere.py` and `fusefs/model.py`") == ["engine/nowhere.py", "fusefs/model.py"]
    assert not exists("engine/nowhere.py")
    assert exists("fusefs/model.py") and exists("engine/registry/signatures/") and exists("engine/store")
    assert relative_names("`client.py`, `analysis/entries.py`, `engine/store.py`, `gone.py`") == [
        "analysis/entries.py", "client.py", "gone.py"]
    assert resolves("analysis/entries.py", TREE) and resolves("client.py", TREE) and not resolves("gone.py", TREE)
