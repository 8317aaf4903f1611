"""Inspektor Gadget-like source trees for the header-search tests, assembled from tests/engine/build_sources.

A tree has ``include/gadget/tree.h`` (defines ``TREE_MARK``) and ``include/gadget/<arch>/vmlinux.h``
(stand-ins that refuse the other architecture and define ``VMLINUX_ARCH_MARK``). A decoy tree's
headers stop the compile with ``#error``, so a build that uses the wrong tree fails loudly.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from elftools.elf.elffile import ELFFile

BUILD_SOURCES = Path(__file__).resolve().parents[1] / "engine" / "build_sources"
ARCH_MARKS = {"amd64": 0x11111111, "arm64": 0x22222222}


def make_tree(root: Path, mark: int) -> Path:
    gadget_include = root / "include" / "gadget"
    for arch in ARCH_MARKS:
        (gadget_include / arch).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(BUILD_SOURCES / "vmlinux" / arch / "vmlinux.h", gadget_include / arch / "vmlinux.h")
    (gadget_include / "tree.h").write_text(f"#define TREE_MARK {mark}\n")
    return root


def make_decoy_tree(root: Path) -> Path:
    gadget_include = root / "include" / "gadget"
    for arch in ARCH_MARKS:
        (gadget_include / arch).mkdir(parents=True, exist_ok=True)
        (gadget_include / arch / "vmlinux.h").write_text(f'#error "decoy tree {root.name} used ({arch})"\n')
    (gadget_include / "tree.h").write_text(f'#error "decoy tree {root.name} used"\n')
    return root


def copy_gadget(name: str, destination: Path) -> Path:
    """One of build_sources' gadgets (``headers_probe``, ``probe6``), copied to ``destination``."""
    shutil.copytree(BUILD_SOURCES / name, destination)
    return destination


def rodata_marks(elf_bytes: bytes) -> tuple[int, int]:
    """headers_probe's (arch mark, tree mark) from .rodata."""
    elf = ELFFile(io.BytesIO(elf_bytes))
    section = elf.get_section_by_name(".rodata")
    assert section is not None
    data = section.data()
    order = "little" if elf.little_endian else "big"
    return int.from_bytes(data[0:4], order), int.from_bytes(data[4:8], order)


def section_names(elf_bytes: bytes) -> set[str]:
    return {section.name for section in ELFFile(io.BytesIO(elf_bytes)).iter_sections()}
