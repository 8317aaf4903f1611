"""One exception tree: every exception class the package defines is a GadgetStoreError (with an exit
code, documented in a tree) or one of a few internal ones that never reach the user."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

from gadgetstore.engine import errors
from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.registry import errors as registry_errors
from gadgetstore.engine.signatures import errors as signature_errors

PACKAGES = ("gadgetstore.engine", "gadgetstore.cli", "gadgetstore.fusefs")

INTERNAL = {
    # a replacer refusing a field: caught by formatters_operator around each replacer
    "gadgetstore.engine.analysis.operator_rules._Skip",
    # a wasm construct the reader does not evaluate: caught by the section readers
    "gadgetstore.engine.analysis.wasm._Unmodelled",
    # a call the bounded interpreter cannot follow: _Machine.run answers None
    "gadgetstore.engine.analysis.wasmexec._GiveUp",
    # a damaged journal record: decode/salvage report it in their result, the journal as a StoreError
    "gadgetstore.engine.journal_format.BadOperation",
    # a stalled exchange (a trio.TooSlowError): every exchange raises a TransportError for it
    "gadgetstore.engine.registry.http.TransferStalled",
    # serve: a bad Range header, page size, or blob on disk become a 416, a 400, a 404 or a closed connection
    "gadgetstore.engine.serve.ranges.Unsatisfiable",
    "gadgetstore.engine.serve.routes._BadPage",
    "gadgetstore.engine.serve.server._Damaged",
    # the mount's model: ENOENT for the kernel, or facts to load before asking again
    "gadgetstore.fusefs.model.NotFound",
    "gadgetstore.fusefs.model.Missing",
    # a YAML codec error: image inspect wraps it in its InspectError
    "gadgetstore.cli.goyaml.scalars.GoYamlError",
}


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined (not imported) in a module of the package, by qualified name."""
    found: dict[str, type[BaseException]] = {}
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names = [package_name] + [m.name for m in pkgutil.walk_packages(package.__path__, package_name + ".")]
        for name in names:
            module = importlib.import_module(name)
            for attr, value in vars(module).items():
                if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                    found[f"{name}.{attr}"] = value
    return found


def drawn_parents(tree: str) -> dict[str, str | None]:
    """Each class a tree drawn in a docstring names, and the class it is drawn under (None: a root)."""
    parents: dict[str, str | None] = {}
    open_branches: list[tuple[int, str]] = []  # (indent, name) of the classes above the current line
    for prefix, name in re.findall(r"^ {4}([│├└─ ]*)([A-Z]\w+)", tree, re.MULTILINE):
        while open_branches and open_branches[-1][0] >= len(prefix):
            open_branches.pop()
        parents[name] = open_branches[-1][1] if open_branches else None
        open_branches.append((len(prefix), name))
    return parents


EXCEPTIONS = defined_exceptions()
DRAWN = [drawn_parents(module.__doc__ or "") for module in (errors, registry_errors, signature_errors)]
"""The trees drawn in the docstrings of the three errors modules (a class may head one and sit in another)."""
DOCUMENTED = {name for tree in DRAWN for name in tree}
USER_ERRORS = {name: cls for name, cls in EXCEPTIONS.items() if issubclass(cls, GadgetStoreError)}


def test_every_exception_is_a_user_error_or_a_listed_internal_one() -> None:
    outside = {name for name, cls in EXCEPTIONS.items() if not issubclass(cls, GadgetStoreError)}
    assert outside == INTERNAL


@pytest.mark.parametrize("name", sorted(INTERNAL))
def test_an_internal_exception_says_where_it_is_caught(name: str) -> None:
    assert "Internal" in (EXCEPTIONS[name].__doc__ or "")


@pytest.mark.parametrize("name", sorted(USER_ERRORS))
def test_a_user_error_has_an_exit_code_and_a_place_in_a_documented_tree(name: str) -> None:
    cls = USER_ERRORS[name]
    assert isinstance(cls.exit_code, int) and cls.exit_code not in (0, 2) and cls.exit_code < 126  # 2: usage
    assert cls.__name__ in DOCUMENTED
    drawn_under = {tree[cls.__name__] for tree in DRAWN if tree.get(cls.__name__) is not None}
    assert drawn_under <= {cls.__bases__[0].__name__}, "drawn under another class than its base"


def test_a_tree_is_read_with_its_branches() -> None:
    tree = """
    Root
    ├── Ax
    │   ├── Bx
    │   │   └── Cx
    │   └── Dx
    └── Ex
"""
    assert drawn_parents(tree) == {"Root": None, "Ax": "Root", "Bx": "Ax", "Cx": "Bx", "Dx": "Ax", "Ex": "Root"}
