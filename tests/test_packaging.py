"""The installed package holds every package of the source tree (an editable install hides a missing one)."""

from __future__ import annotations

import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TOP_DIRS = {"engine": "gadgetstore.engine", "cli": "gadgetstore.cli", "fusefs": "gadgetstore.fusefs"}


def test_every_source_package_is_installed_from_its_directory() -> None:
    setuptools = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"]
    expected = {}
    for top, dotted in TOP_DIRS.items():
        for init in (PROJECT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(PROJECT / top)
            expected[".".join([dotted, *relative.parts])] = "/".join([top, *relative.parts])
    assert set(setuptools["packages"]) == set(expected)
    assert {name: setuptools["package-dir"].get(name) for name in expected} == expected
