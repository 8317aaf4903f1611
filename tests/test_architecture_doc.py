"""docs/architecture.md names modules by path; each one must exist, so the map cannot drift from the tree."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DOC = PROJECT / "docs" / "architecture.md"

# Code spans that start with a package: `engine/store.py`, `engine/registry/signatures/`, `engine/ingest`.
MODULE_SPAN = re.compile(r"`((?:engine|cli|fusefs)/[A-Za-z0-9_/]*(?:\.py)?)`")


def named_paths(text: str) -> list[str]:
    return sorted(set(MODULE_SPAN.findall(text)))


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


def test_a_module_that_does_not_exist_is_caught() -> None:
    assert named_paths("see `engine/nowhere.py` and `fusefs/model.py`") == ["engine/nowhere.py", "fusefs/model.py"]
    assert not exists("engine/nowhere.py")
    assert exists("fusefs/model.py") and exists("engine/registry/signatures/") and exists("engine/store")
