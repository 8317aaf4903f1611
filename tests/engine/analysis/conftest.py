"""Fixtures for the ELF/BTF/wasm analysis tests: compiled test gadgets, real gadget layers, oracles.

The oracles (llvm-readelf, llvm-objdump, bpftool) are independent implementations; the
helpers here only run them and parse their output, never our own code.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.images import ArchivedImage

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[2]
GADGET_SOURCES = HERE / "gadgets"
INCLUDE_DIR = PROJECT / "include"
CLANG_COMMAND = ["clang", "-target", "bpf", "-g", "-O2", "-D__TARGET_ARCH_x86",
                 "-I/usr/include/x86_64-linux-gnu", f"-I{INCLUDE_DIR}", "-Werror", "-c"]


def _run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def gadget_objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every ``gadgets/*.bpf.c`` compiled once per session, keyed by stem (``hash_array``)."""
    out_dir = tmp_path_factory.mktemp("gadgets")
    objects = {}
    for source in sorted(GADGET_SOURCES.glob("*.bpf.c")):
        name = source.name.removesuffix(".bpf.c")
        target = out_dir / f"{name}.o"
        subprocess.run([*CLANG_COMMAND, str(source), "-o", str(target)], check=True, capture_output=True)
        objects[name] = target
    assert len(objects) >= 6
    return objects


@pytest.fixture(scope="session")
def demo_elves(gadget_image: ArchivedImage) -> dict[str, bytes]:
    """The amd64 and arm64 eBPF layers of the suite's own trace_demo image."""
    return gadget_image.elves


@pytest.fixture(scope="session")
def trace_open_elves(ig_export_image: ArchivedImage) -> dict[str, bytes]:
    """The amd64 and arm64 eBPF layers ig built for trace_open (only for tests of compatibility with ig)."""
    return ig_export_image.elves


@pytest.fixture(scope="session")
def write_blob(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, bytes], Path]:
    """Store bytes in a file so that command-line oracles can read them."""
    directory = tmp_path_factory.mktemp("blobs")

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        return path

    return write


@pytest.fixture(scope="session")
def readelf_section_names() -> Callable[[Path], list[str]]:
    """Section names in header order from ``llvm-readobj --sections`` (includes the null section)."""
    def parse(path: Path) -> list[str]:
        output = _run("llvm-readobj", "--sections", str(path))
        return [match.group(1) for match in re.finditer(r"^\s+Name: (.*) \(\d+\)$", output, re.MULTILINE)]
    return parse


@pytest.fixture(scope="session")
def readelf_symbols() -> Callable[[Path], list[dict[str, str]]]:
    """Symbols from ``llvm-readelf -s`` as dicts with Value/Size/Type/Bind/Vis/Ndx/Name."""
    def parse(path: Path) -> list[dict[str, str]]:
        symbols = []
        for line in _run("llvm-readelf", "-s", "--wide", str(path)).splitlines():
            fields = line.split()
            if len(fields) == 8 and fields[0].endswith(":") and fields[0][:-1].isdigit():
                keys = ("Num", "Value", "Size", "Type", "Bind", "Vis", "Ndx", "Name")
                symbols.append(dict(zip(keys, fields, strict=True)))
        return symbols
    return parse


@pytest.fixture(scope="session")
def objdump_functions() -> Callable[[Path], dict[str, list[tuple[int, bytes, str]]]]:
    """``llvm-objdump -d``: per function symbol, ``(slot in section, raw bytes, mnemonic text)``.

    Local ``LBB*`` labels continue the current function; section headers reset it.
    """
    line_pattern = re.compile(r"^\s+(\d+):\t((?:[0-9a-f]{2} ?)+)\t(.*)$")
    header_pattern = re.compile(r"^([0-9a-f]{16}) <(.+)>:$")

    def parse(path: Path) -> dict[str, list[tuple[int, bytes, str]]]:
        functions: dict[str, list[tuple[int, bytes, str]]] = {}
        current: list[tuple[int, bytes, str]] | None = None
        for line in _run("llvm-objdump", "-d", str(path)).splitlines():
            header = header_pattern.match(line)
            if header:
                if not header.group(2).startswith("LBB"):
                    current = functions.setdefault(header.group(2), [])
                continue
            if line.startswith("Disassembly of section"):
                current = None
                continue
            instruction = line_pattern.match(line)
            if instruction and current is not None:
                current.append((int(instruction.group(1)), bytes.fromhex(instruction.group(2)),
                                instruction.group(3).strip()))
        return functions
    return parse


@pytest.fixture(scope="session")
def bpftool_types() -> Callable[[Path], list[dict[str, object]]]:
    """``bpftool -j btf dump file``: the BTF types as bpftool (libbpf) decodes them."""
    def parse(path: Path) -> list[dict[str, object]]:
        types: list[dict[str, object]] = json.loads(_run("bpftool", "-j", "btf", "dump", "file", str(path)))["types"]
        return types
    return parse
