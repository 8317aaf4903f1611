"""Instruction decoding and text in cilium/ebpf's format, on hand-assembled instructions."""

from __future__ import annotations

import struct

import pytest

from gadgetstore.engine.analysis.binreader import decode_name
from gadgetstore.engine.analysis.extrainfo import go_json
from gadgetstore.engine.analysis.insn import Instruction, decode_instructions, format_instruction
from gadgetstore.engine.analysis.listing import format_source, offset_width
from gadgetstore.engine.errors import AnalysisError


def insn(opcode: int, dst: int = 0, src: int = 0, offset: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", opcode, (src << 4) | dst, offset, imm)


def text_of(raw: bytes) -> str:
    (decoded,) = decode_instructions(raw, True, "test", 0)
    return format_instruction(decoded)


@pytest.mark.parametrize(("raw", "expected"), [
    (insn(0x79, 6, 1, 112), "LdXMemDW dst: r6 src: r1 off: 112 imm: 0"),
    (insn(0x7B, 10, 6, -8), "StXMemDW dst: rfp src: r6 off: -8 imm: 0"),
    (insn(0x7A, 1, 0, -8, 5), "StMemDW dst: r1 src: r0 off: -8 imm: 5"),
    (insn(0x91, 1, 2, 4), "LdXMemSXB dst: r1 src: r2 off: 4 imm: 0"),
    (insn(0x20, imm=12), "LdAbsW imm: 12"),
    (insn(0x40, 0, 3, imm=4), "LdIndW dst: r0 src: r3 imm: 4"),
    (insn(0xDB, 1, 2, 8, 0x00), "StXAtomicAddDW dst: r1 src: r2 off: 8"),
    (insn(0xDB, 1, 2, 8, 0x01), "StXAtomicFetchAddDW dst: r1 src: r2 off: 8"),
    (insn(0xC3, 1, 2, 0, 0xA1), "StXAtomicFetchXorW dst: r1 src: r2 off: 0"),
    (insn(0xDB, 1, 2, 0, 0xE1), "StXAtomicXchgDW dst: r1 src: r2 off: 0"),
    (insn(0xDB, 1, 2, 0, 0xF1), "StXAtomicCmpXchgDW dst: r1 src: r2 off: 0"),
    (insn(0xB7, 0, 0, 0, 0), "MovImm dst: r0 imm: 0"),
    (insn(0x0F, 1, 2), "AddReg dst: r1 src: r2"),
    (insn(0x04, 1, 0, 0, -3), "AddImm32 dst: r1 imm: -3"),
    (insn(0x3F, 1, 2, 1), "SDivReg dst: r1 src: r2"),
    (insn(0x9C, 1, 2, 1), "SModReg32 dst: r1 src: r2"),
    (insn(0xBF, 1, 3, 8), "MovSX8Reg dst: r1 src: r3"),
    (insn(0xBC, 1, 3, 16), "MovSX16Reg32 dst: r1 src: r3"),
    (insn(0xD7, 3, 0, 0, 64), "BSwap64 dst: r3 "),
    (insn(0xDC, 1, 0, 0, 32), "SwapBE dst: r1 "),
    (insn(0xD4, 1, 0, 0, 16), "SwapLE dst: r1 "),
    (insn(0x87, 1), "NegImm dst: r1 imm: 0"),
    (insn(0xC7, 2, 0, 0, 4), "ArShImm dst: r2 imm: 4"),
    (insn(0x6F, 2, 5), "LShReg dst: r2 src: r5"),
    (insn(0xE7, 1), "ALUOp(224)Imm dst: r1 imm: 0"),
    (insn(0x15, 0, 0, 18, 0), "JEqImm dst: r0 off: 18 imm: 0"),
    (insn(0x2D, 1, 2, 3), "JGTReg dst: r1 off: 3 src: r2"),
    (insn(0x16, 1, 0, 3, 7), "JEq32Imm dst: r1 off: 3 imm: 7"),
    (insn(0xCE, 1, 2, -2), "JSLT32Reg dst: r1 off: -2 src: r2"),
    (insn(0x05, offset=8), "Ja off: 8"),
    (insn(0x06, imm=5), "Ja32 imm: 5"),
    (insn(0xE5, offset=3), "JCond may_goto off: 3"),
    (insn(0x86, 1, 0, 2, 9), "InvalidJumpOp32Imm dst: r1 off: 2 imm: 9"),
    (insn(0x85, imm=14), "Call FnGetCurrentPidTgid"),
    (insn(0x85, imm=211), "Call FnCgrpStorageDelete"),
    (insn(0x85, imm=212), "Call BuiltinFunc(212)"),
    (insn(0x85, imm=-1), "Call BuiltinFunc(4294967295)"),
    (insn(0x85, 0, 1, 0, -1), "Call -1"),
    (insn(0x95), "Exit"),
    (insn(0x18, 0, 0, 0, 42) + insn(0, imm=0), "LdImmDW dst: r0 imm: 42"),
    (insn(0x18, 3, 0, 0, -1) + insn(0, imm=0x7FFFFFFF), f"LdImmDW dst: r3 imm: {0x7FFFFFFFFFFFFFFF}"),
    (insn(0x18, 1, 1, 0, 7) + insn(0), "LoadMapPtr dst: r1 fd: 7"),
    (insn(0x18, 1, 2, 0, 0) + insn(0, imm=16), "LoadMapValue dst: r1, fd: 0 off: 16"),
])
def test_instruction_text(raw: bytes, expected: str) -> None:
    assert text_of(raw) == expected


def test_references_are_appended_except_on_exit() -> None:
    assert format_instruction(Instruction(0x18, 1, 2, 0, 16 << 32, 2, reference=".rodata")) == \
        "LoadMapValue dst: r1, fd: 0 off: 16 <.rodata>"
    assert format_instruction(Instruction(0x85, 0, 2, 0, -1, reference="bpf_kfunc")) == "Call Kfunc(-1) <bpf_kfunc>"
    assert format_instruction(Instruction(0x18, 2, 4, 0, -1, 2, reference="cb")) == "LdImmDW dst: r2 imm: -1 <cb>"
    assert format_instruction(Instruction(0x95, 0, 0, 0, 0, reference="ignored")) == "Exit"


def test_big_endian_swaps_register_nibbles() -> None:
    raw = struct.pack(">BBhi", 0x79, (6 << 4) | 1, 112, 0)
    (decoded,) = decode_instructions(raw, False, "test", 0)
    assert format_instruction(decoded) == "LdXMemDW dst: r6 src: r1 off: 112 imm: 0"


@pytest.mark.parametrize(("raw", "message"), [
    (insn(0x18), "missing its second half"),
    (insn(0x18) + insn(0x07), "non-zero opcode bytes"),
    (insn(0x85, imm=1 << 28), "helper id"),
    (insn(0x95)[:5], "not a whole number of instructions"),
])
def test_undecodable_instructions(raw: bytes, message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        decode_instructions(raw, True, "ELF section 'x'", 100)


def test_cilium_format_example_with_double_wide_load() -> None:
    instructions = decode_instructions(insn(0x85, imm=1) + insn(0x18, imm=42) + insn(0) + insn(0x95), True, "t", 0)
    instructions[0].symbol = "my_func"
    instructions[0].source_line = "  bpf_map_lookup_elem()  "
    instructions[1].source_line = "abc = 42"
    instructions[2].source_line = " \t "  # whitespace-only lines are dropped from Source
    assert format_source(instructions) == (
        "my_func:\n"
        "\t ; bpf_map_lookup_elem()\n"
        "\t0: Call FnMapLookupElem\n"
        "\t ; abc = 42\n"
        "\t1: LdImmDW dst: r0 imm: 42\n"
        "\t3: Exit\n")


@pytest.mark.parametrize(("count", "width"), [(1, 1), (3, 1), (5, 1), (27, 2), (50, 2), (500, 3), (5000, 4)])
def test_offset_width_assumes_double_wide_instructions(count: int, width: int) -> None:
    assert offset_width(count) == width


def test_go_json_matches_encoding_json() -> None:
    value = [{"Source": "Call -1 <sub>\n\t& \u2028\u2029 é \x01\x7f", "Size": 8}, None, True]
    assert go_json(value) == (
        b'[{"Source":"Call -1 \\u003csub\\u003e\\n\\t\\u0026 \\u2028\\u2029 \xc3\xa9 \\u0001\x7f","Size":8},'
        b"null,true]")
    assert go_json(decode_name(b"a\xffb\xe2\x82")) == b'"a\\ufffdb\\ufffd\\ufffd"'
