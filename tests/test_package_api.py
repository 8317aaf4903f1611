"""Each package says what other packages may use (``__all__`` in its ``__init__.py``: modules and
names), and no module reaches past that: nothing private, nothing unlisted, from another package;
nor up the layers docs/architecture.md draws (engine, then fusefs, then cli).

A package is a directory with an ``__init__.py``; a subpackage is another package than its parent.
Tests are not checked: they may use any module they test.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
TOP_DIRS = {"engine": "gadgetstore.engine", "cli": "gadgetstore.cli", "fusefs": "gadgetstore.fusefs"}


def module_files() -> dict[str, Path]:
    """Every module of the source tree by its dotted name (a package by its own name)."""
    found = {}
    for top, dotted in TOP_DIRS.items():
        for path in (PROJECT / top).rglob("*.py"):
            parts = [dotted, *path.relative_to(PROJECT / top).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = module_files()
PACKAGES = sorted(name for name, path in MODULES.items() if path.name == "__init__.py")


def package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]


def declared_api(package: str) -> list[str] | None:
    """The package's ``__all__`` as written (a literal list of strings), None if it has none."""
    for node in ast.parse(MODULES[package].read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list | tuple) and all(isinstance(each, str) for each in value), package
            return list(value)
    return None


@dataclass(frozen=True)
class Use:
    """``importer`` (line ``line``) uses ``name`` of module ``source``; ``name`` None: the module itself."""

    importer: str
    line: int
    source: str
    name: str | None

    def __str__(self) -> str:
        what = self.source if self.name is None else f"{self.source}.{self.name}"
        return f"{MODULES[self.importer].relative_to(PROJECT)}:{self.line} uses {what}"


def uses_of_other_packages(importer: str) -> list[Use]:
    """What ``importer`` takes from modules of other packages: imported names and modules, and the
    attributes it reads of a module it imported."""
    own = package_of(importer)
    tree = ast.parse(MODULES[importer].read_text())
    uses: list[Use] = []
    module_aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = own.split(".")[: len(own.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source not in MODULES:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:  # ``from package import module``
                    module_aliases[alias.asname or alias.name] = submodule
                    uses.append(Use(importer, node.lineno, submodule, None))
                else:
                    uses.append(Use(importer, node.lineno, source, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    uses.append(Use(importer, node.lineno, alias.name, None))
                    if alias.asname:
                        module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases):
            uses.append(Use(importer, node.lineno, module_aliases[node.value.id], node.attr))
    return [use for use in uses if package_of(use.source) != own]


USES = [use for module in sorted(MODULES) for use in uses_of_other_packages(module)]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_declares_what_others_may_use(package: str) -> None:
    api = declared_api(package)
    assert api is not None, f"{package} has no __all__"
    imported = importlib.import_module(package)
    for name in api:  # each entry a module of the package, or a name it defines (or loads on first use)
        assert importlib.util.find_spec(f"{package}.{name}") is not None or hasattr(imported, name), name


def test_no_module_uses_a_private_name_of_another_package() -> None:
    private = [str(use) for use in USES
               if use.name is not None and use.name.startswith("_") and not use.name.startswith("__")]
    assert private == []


def test_other_packages_use_only_what_a_package_lists() -> None:
    """``from P.module import x`` needs ``module`` in P's ``__all__``; ``from P import x`` needs ``x``."""
    unlisted = []
    for use in USES:
        if MODULES[use.source].name == "__init__.py":
            if use.name is not None and use.name not in (declared_api(use.source) or []):
                unlisted.append(str(use))
            continue
        package, module = use.source.rsplit(".", 1)
        if module not in (declared_api(package) or []):
            unlisted.append(str(use))
    assert unlisted == []


LAYER = {"gadgetstore.engine": 0, "gadgetstore.fusefs": 1, "gadgetstore.cli": 2}
"""docs/architecture.md's picture: a package uses only those below it (the CLI the mount, both the engine)."""
ABOVE_THE_STORE = ("gadgetstore.engine.registry", "gadgetstore.engine.serve", "gadgetstore.engine.signatures")
"""Engine packages drawn above the store's own modules (``gadgetstore.engine``), which never use them."""


def layer(module: str) -> int:
    return LAYER[".".join(module.split(".")[:2])]


def test_packages_use_only_what_is_drawn_below_them() -> None:
    upward = [str(use) for use in USES if layer(use.source) > layer(use.importer)]
    upward += [str(use) for use in USES if package_of(use.importer) == "gadgetstore.engine"
               and use.source.startswith(ABOVE_THE_STORE)]
    assert upward == []
