"""Our ELF/BTF/instruction decoding checked against llvm-readelf, llvm-objdump and bpftool."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gadgetstore.engine.analysis.btf import parse_btf
from gadgetstore.engine.analysis.collection import load_collection
from gadgetstore.engine.analysis.elffile import ElfObject
from gadgetstore.engine.analysis.extrainfo import analyze_ebpf
from gadgetstore.engine.analysis.helpernames import HELPER_NAMES

GADGETS = ["core_read", "externs", "hash_array", "image_inspect", "legacy_printk", "lsm_subprog", "percpu_ringbuf",
           "perf_lru"]
BPFTOOL_KINDS = {1: "INT", 2: "PTR", 3: "ARRAY", 4: "STRUCT", 5: "UNION", 6: "ENUM", 7: "FWD", 8: "TYPEDEF",
                 9: "VOLATILE", 10: "CONST", 11: "RESTRICT", 12: "FUNC", 13: "FUNC_PROTO", 14: "VAR",
                 15: "DATASEC", 16: "FLOAT", 17: "DECL_TAG", 18: "TYPE_TAG", 19: "ENUM64"}


REAL_LAYERS = {"trace_demo": "demo_elves", "trace_open": "trace_open_elves"}
"""Real gadget layers by image: the suite's own trace_demo and ig's trace_open (compatibility with ig)."""


@pytest.fixture(params=[*GADGETS, "trace_demo_amd64", "trace_demo_arm64",
                        *(pytest.param(f"trace_open_{arch}", marks=pytest.mark.ig_export)
                          for arch in ("amd64", "arm64"))])
def elf_path(request: pytest.FixtureRequest, gadget_objects: dict[str, Path],
             write_blob: Callable[[str, bytes], Path]) -> Path:
    name: str = request.param
    image, _, arch = name.rpartition("_")
    if image in REAL_LAYERS:
        layers: dict[str, bytes] = request.getfixturevalue(REAL_LAYERS[image])
        return write_blob(f"{name}.o", layers[arch])
    return gadget_objects[name]


def test_sections_equal_llvm_readelf(elf_path: Path, readelf_section_names: Callable[[Path], list[str]]) -> None:
    sections = json.loads(analyze_ebpf(elf_path.read_bytes())["ebpf.sections"][1])
    expected = readelf_section_names(elf_path)
    assert sections == expected
    assert sections[0] == "" and ".BTF" in sections and ".symtab" in sections


def _own_segments(source: str) -> dict[str, list[tuple[int, str]]]:
    """Split a cilium listing into ``label -> [(raw offset, instruction text)]``."""
    segments: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] = []
    for line in source.splitlines():
        if not line.startswith("\t"):
            current = segments.setdefault(line.removesuffix(":"), [])
            continue
        match = re.match(r"^\t *(\d+): (.*)$", line)
        if match:
            current.append((int(match.group(1)), match.group(2)))
    return segments


def _objdump_agrees(ours: str, theirs: str) -> bool:
    """Loose mnemonic correspondence between cilium text and LLVM's BPF assembly."""
    if theirs.startswith("call "):
        number = theirs.split()[1]
        if ours.startswith("Call -1 <") or ours.startswith("Call Kfunc"):
            return True
        return number.isdigit() and ours == f"Call {HELPER_NAMES[int(number)]}"
    if theirs == "exit":
        return ours == "Exit"
    if theirs.endswith(" ll"):
        return ours.startswith(("LoadMapPtr", "LoadMapValue", "LdImmDW"))
    if theirs.startswith("if "):
        return ours.startswith("J")
    if theirs.startswith("goto "):
        return ours.startswith("Ja")
    return not ours.startswith(("Call", "Exit", "J", "Load"))


def test_instructions_agree_with_llvm_objdump(
        elf_path: Path, objdump_functions: Callable[[Path], dict[str, list[tuple[int, bytes, str]]]],
        readelf_symbols: Callable[[Path], list[dict[str, str]]]) -> None:
    disassembly = objdump_functions(elf_path)
    symbol_slots = {symbol["Name"]: int(symbol["Value"], 16) // 8 for symbol in readelf_symbols(elf_path)
                    if symbol["Type"] == "FUNC"}
    collection = load_collection(elf_path.read_bytes())
    checked = 0
    for program in json.loads(analyze_ebpf(elf_path.read_bytes())["ebpf.programs"][1]):
        for function, listed in _own_segments(program["Source"]).items():
            theirs = disassembly[function]
            base = listed[0][0]
            # Offsets restart at the label in a flattened listing; objdump counts from the section start.
            assert [offset - base + symbol_slots[function] for offset, _ in listed] == [slot for slot, _, _ in theirs]
            for (_, text), (_, _raw, mnemonic) in zip(listed, theirs, strict=True):
                assert _objdump_agrees(text, mnemonic), (function, text, mnemonic)
                checked += 1
    assert checked > 10
    for spec in collection.programs.values():
        own = [ins for ins in spec.instructions[1:] if ins.symbol][:1]
        first_foreign = spec.instructions.index(own[0]) if own else len(spec.instructions)
        theirs = disassembly[spec.name]
        assert [ins.opcode & 0xFF for ins in spec.instructions[:first_foreign]] == [raw[0] for _, raw, _ in theirs]


def test_btf_types_equal_bpftool(elf_path: Path, bpftool_types: Callable[[Path], list[dict[str, object]]]) -> None:
    elf = ElfObject(elf_path.read_bytes())
    section = elf.section_named(".BTF")
    assert section is not None
    btf = parse_btf(elf.section_data(section))
    expected = bpftool_types(elf_path)
    assert len(btf.types) - 1 == len(expected)
    for ours, theirs in zip(btf.types[1:], expected, strict=True):
        assert ours.type_id == theirs["id"]
        assert BPFTOOL_KINDS[ours.kind] == theirs["kind"]
        assert (ours.name or "(anon)") == theirs["name"]
        if "size" in theirs:
            assert ours.size == theirs["size"]
        if "type_id" in theirs:
            assert (ours.array_elem if ours.kind == 3 else ours.ref) == theirs["type_id"]
        if "nr_elems" in theirs:
            assert ours.array_nelems == theirs["nr_elems"]
        if "members" in theirs:
            members = theirs["members"]
            assert isinstance(members, list)
            assert [(m.name or "(anon)", m.type_id, m.bit_offset) for m in ours.members] == \
                [(m["name"], m["type_id"], m["bits_offset"]) for m in members]
        if "vars" in theirs:
            variables = theirs["vars"]
            assert isinstance(variables, list)
            assert [(v.type_id, v.offset, v.size) for v in ours.secinfos] == \
                [(v["type_id"], v["offset"], v["size"]) for v in variables]


def test_map_names_equal_bpftool_maps_datasec_plus_legacy_symbols(
        elf_path: Path, bpftool_types: Callable[[Path], list[dict[str, object]]],
        readelf_symbols: Callable[[Path], list[dict[str, str]]],
        readelf_section_names: Callable[[Path], list[str]]) -> None:
    types = bpftool_types(elf_path)
    names_by_id = {entry["id"]: entry["name"] for entry in types}
    expected = set()
    for datasec in (entry for entry in types if entry["kind"] == "DATASEC" and entry["name"] == ".maps"):
        variables = datasec["vars"]
        assert isinstance(variables, list)
        expected |= {names_by_id[variable["type_id"]] for variable in variables}
    sections = readelf_section_names(elf_path)
    expected |= {symbol["Name"] for symbol in readelf_symbols(elf_path)
                 if symbol["Ndx"].isdigit() and sections[int(symbol["Ndx"])].startswith("maps")}
    reported = {entry["Name"] for entry in json.loads(analyze_ebpf(elf_path.read_bytes())["ebpf.maps"][1]) or []}
    # Data sections (.data, .data.*, .rodata.*) are maps too; they are checked by the variables test.
    assert {name for name in reported if not name.startswith(".")} == expected


def test_variables_equal_global_data_symbols(
        elf_path: Path, readelf_symbols: Callable[[Path], list[dict[str, str]]],
        readelf_section_names: Callable[[Path], list[str]]) -> None:
    sections = readelf_section_names(elf_path)
    want = [
        {"Name": symbol["Name"], "Offset": int(symbol["Value"], 16), "Size": int(symbol["Size"]),
         "Map": sections[int(symbol["Ndx"])]}
        for symbol in readelf_symbols(elf_path)
        if symbol["Bind"] == "GLOBAL" and symbol["Type"] == "OBJECT" and symbol["Ndx"].isdigit()
        and (sections[int(symbol["Ndx"])] == ".bss" or sections[int(symbol["Ndx"])].startswith((".data", ".rodata")))]
    got = json.loads(analyze_ebpf(elf_path.read_bytes())["ebpf.variables"][1]) or []
    assert got == sorted(want, key=lambda entry: str(entry["Name"]))
