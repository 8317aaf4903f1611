"""Where clang finds a gadget's headers, laid out as Inspektor Gadget's builder lays them out.

ig's builder image copies ig's ``include/`` into ``/usr/include``: ``<gadget/macros.h>`` is then a
system header and ``<vmlinux.h>`` comes from ``-I /usr/include/gadget/<arch>/``; with
``IG_SOURCE_PATH`` it also passes the checkout's ``include/`` and ``include/gadget/<arch>/``.
Outside that image the same headers live in an ig checkout, so the search is, in this order:

1. every ``--include DIR``, in the order given; DIR takes ``/usr/include``'s role:
   ``-I DIR/ -I DIR/gadget/<arch>/``;
2. the Inspektor Gadget tree: ``IG_SOURCE_PATH`` when set, else the nearest directory at or above
   the gadget directory that holds ``include/gadget/`` (no ``.git`` needed: exported trees have
   none): ``-I TREE/include/ -I TREE/include/gadget/<arch>/``;
3. only when neither gave a directory: ``-I /usr/include/gadget/<arch>/`` (an installed ig).

Earlier directories win. Directories that do not exist are left out. This project's own
``include/gadget/`` (helpers for its examples and tests) is found by rule 2 for sources inside the
checkout, like any tree with ``include/gadget/``.

libbpf: when the ``<bpf/bpf_tracing.h>`` clang would use belongs to libbpf older than 1.2, the
directory of gadgetstore's compatibility header goes first on the path (see
``engine/data/libbpf_compat/bpf/bpf_tracing.h``): it includes the real header and adds the macros
ig's gadgets use that 1.2 introduced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .buildspec import BuildError

SYSTEM_INCLUDE = Path("/usr/include")
SYSTEM_HEADER_DIRS = (Path("/usr/local/include"), SYSTEM_INCLUDE)
"""Where clang looks for ``<bpf/…>`` after the ``-I`` directories (Debian's clang, ``-target bpf``)."""

COMPAT_INCLUDE = Path(__file__).resolve().parent / "data" / "libbpf_compat"
LIBBPF_WITH_ALL_MACROS = (1, 2)

ORIGIN_OPTION = "--include"
ORIGIN_ENV = "IG_SOURCE_PATH"
ORIGIN_WALK_UP = "the Inspektor Gadget tree above the gadget directory"
ORIGIN_SYSTEM = "installed ig headers"

_VERSION_DEFINE = re.compile(rb"^\s*#\s*define\s+LIBBPF_(MAJOR|MINOR)_VERSION\s+(\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class IncludeRoot:
    """A directory playing ``/usr/include``'s role: clang gets it and its ``gadget/<arch>/``."""

    path: Path
    origin: str
    search_root: bool = True
    """False for /usr/include itself, which clang searches anyway (only its ``gadget/<arch>/`` is added)."""

    def dirs(self, arch: str) -> list[Path]:
        candidates = [self.path] if self.search_root else []
        candidates.append(self.path / "gadget" / arch)
        return [path for path in candidates if path.is_dir()]


@dataclass(frozen=True)
class HeaderSearch:
    roots: tuple[IncludeRoot, ...]

    def include_dirs(self, arch: str) -> tuple[Path, ...]:
        return tuple(path for root in self.roots for path in root.dirs(arch))

    def describe(self) -> list[str]:
        if not self.roots:
            return ["gadget headers: none found (no --include, no IG_SOURCE_PATH, no include/gadget/ above the "
                    "gadget directory, no /usr/include/gadget/)"]
        return [f"gadget headers: {root.path} ({root.origin})" for root in self.roots]


def find_ig_tree(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` (symlinks resolved) that holds ``include/gadget/``."""
    for directory in (start.resolve(), *start.resolve().parents):
        if (directory / "include" / "gadget").is_dir():
            return directory
    return None


def find_header_search(
    gadget_dir: Path,
    include_options: Sequence[Path] = (),
    ig_source_path: str | None = None,
    system_include: Path = SYSTEM_INCLUDE,
) -> HeaderSearch:
    """Apply the search order of the module docstring; bad ``--include`` or IG_SOURCE_PATH values fail."""
    roots = []
    for option in include_options:
        if not option.is_dir():
            raise BuildError(f"--include {option}: not a directory")
        roots.append(IncludeRoot(option.absolute(), ORIGIN_OPTION))  # clang runs in the gadget directory
    if ig_source_path:
        tree = Path(ig_source_path).absolute()
        if not (tree / "include" / "gadget").is_dir():
            raise BuildError(
                f"IG_SOURCE_PATH={ig_source_path}: no include/gadget/ there; it must name an Inspektor Gadget "
                "source tree"
            )
        roots.append(IncludeRoot(tree / "include", ORIGIN_ENV))
    else:
        found = find_ig_tree(gadget_dir)
        if found is not None:
            roots.append(IncludeRoot(found / "include", ORIGIN_WALK_UP))
    if not roots and (system_include / "gadget").is_dir():
        roots.append(IncludeRoot(system_include, ORIGIN_SYSTEM, search_root=False))
    return HeaderSearch(tuple(roots))


# -- libbpf -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LibbpfHeaders:
    """The libbpf headers clang will use: the directory holding ``bpf/`` and their version."""

    directory: Path
    version: tuple[int, int] | None
    """From ``<bpf/libbpf_version.h>``; None when that file is missing (libbpf before 0.7) or unreadable."""

    @property
    def needs_compat(self) -> bool:
        return self.version is None or self.version < LIBBPF_WITH_ALL_MACROS

    def describe(self) -> str:
        version = "unknown version" if self.version is None else f"version {self.version[0]}.{self.version[1]}"
        line = f"libbpf headers: {self.directory / 'bpf'} ({version})"
        if self.needs_compat:
            line += f"; adding gadgetstore's compatibility macros from {COMPAT_INCLUDE / 'bpf'}"
        return line


def read_libbpf_version(header: Path) -> tuple[int, int] | None:
    try:
        text = header.read_bytes()
    except OSError:
        return None
    found = {kind.decode(): int(value) for kind, value in _VERSION_DEFINE.findall(text)}
    if "MAJOR" not in found or "MINOR" not in found:
        return None
    return found["MAJOR"], found["MINOR"]


def find_libbpf(search_dirs: Iterable[Path]) -> LibbpfHeaders | None:
    """The first directory, in clang's order, with ``bpf/bpf_tracing.h``; None when there is none."""
    for directory in search_dirs:
        if (directory / "bpf" / "bpf_tracing.h").is_file():
            return LibbpfHeaders(directory, read_libbpf_version(directory / "bpf" / "libbpf_version.h"))
    return None
