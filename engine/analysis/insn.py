"""eBPF instruction decoding and single-instruction text, as cilium/ebpf v0.22 ``asm`` prints it.

``ig image inspect`` shows programs through ``asm.Instructions.String()``; to reproduce that
byte for byte we keep cilium's extended opcode encoding (signed div/mod, movsx and atomic
ops folded into the opcode above bit 8) and its operand formatting rules.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from gadgetstore.engine.analysis.binreader import analysis_error
from gadgetstore.engine.analysis.btfext import CoreRelocation
from gadgetstore.engine.analysis.helpernames import helper_name

INSTRUCTION_SIZE = 8

CLASS_LD, CLASS_LDX, CLASS_ST, CLASS_STX, CLASS_ALU, CLASS_JMP, CLASS_JMP32, CLASS_ALU64 = range(8)
MODE_IMM, MODE_ABS, MODE_IND, MODE_MEM, MODE_MEMSX, MODE_ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0
SOURCE_REG = 0x08
OP_LD_IMM_DW = 0x18
OP_CALL = 0x85
JUMP_CALL, JUMP_EXIT, JUMP_JA, JUMP_COND = 0x80, 0x90, 0x00, 0xE0
ALU_DIV, ALU_MOD, ALU_MOV, ALU_SWAP = 0x30, 0x90, 0xB0, 0xD0
INVALID_OPCODE = 0xFFFF

PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
PSEUDO_CALL = 1
PSEUDO_KFUNC_CALL = 2
PSEUDO_FUNC = 4

_HELPER_ID_LIMIT = 1 << 28  # higher bits are cilium's platform tag; Linux ids must stay below

_CLASS_NAMES = ("Ld", "LdX", "St", "StX")
_MODE_NAMES = {MODE_IMM: "Imm", MODE_ABS: "Abs", MODE_IND: "Ind", MODE_MEM: "Mem", MODE_MEMSX: "MemSX",
               MODE_ATOMIC: "Atomic"}
_SIZE_NAMES = {0x18: "DW", 0x00: "W", 0x08: "H", 0x10: "B"}
_ATOMIC_NAMES = {0x0000: "Add", 0x5000: "And", 0x4000: "Or", 0xA000: "Xor", 0x0100: "FetchAdd",
                 0x5100: "FetchAnd", 0x4100: "FetchOr", 0xA100: "FetchXor", 0xE100: "Xchg", 0xF100: "CmpXchg",
                 0x10000: "LdAcq", 0x11000: "StRel"}
_ALU_NAMES = {0x00: "Add", 0x10: "Sub", 0x20: "Mul", 0x30: "Div", 0x40: "Or", 0x50: "And", 0x60: "LSh",
              0x70: "RSh", 0x80: "Neg", 0x90: "Mod", 0xA0: "Xor", 0xB0: "Mov", 0xC0: "ArSh", 0xD0: "Swap",
              0x130: "SDiv", 0x190: "SMod", 0x1B0: "MovSX8", 0x2B0: "MovSX16", 0x3B0: "MovSX32"}
_JUMP_NAMES = {0x00: "Ja", 0x10: "JEq", 0x20: "JGT", 0x30: "JGE", 0x40: "JSet", 0x50: "JNE", 0x60: "JSGT",
               0x70: "JSGE", 0x80: "Call", 0x90: "Exit", 0xA0: "JLT", 0xB0: "JLE", 0xC0: "JSLT", 0xD0: "JSLE",
               0xE0: "JCOND"}
_MOVSX_BY_OFFSET = {8: 0x100, 16: 0x200, 32: 0x300}


@dataclass(slots=True)
class Instruction:
    """One decoded instruction plus the loader metadata cilium attaches to it.

    ``opcode`` is cilium's extended 16+ bit opcode; ``slots`` is 2 for the double-wide
    ``LdImmDW`` and 1 otherwise.
    """

    opcode: int
    dst: int
    src: int
    offset: int
    constant: int
    slots: int = 1
    symbol: str = ""
    reference: str = ""
    source_line: str | None = None
    core_relocation: CoreRelocation | None = None

    @property
    def op_class(self) -> int:
        return self.opcode & 0x07

    def is_dword_load(self) -> bool:
        return self.opcode == OP_LD_IMM_DW

    def jump_op(self) -> int | None:
        """The jump op, ``None`` outside the jump classes, ``-1`` for Call/Exit in JMP32."""
        if self.op_class not in (CLASS_JMP, CLASS_JMP32):
            return None
        op = self.opcode & 0xF0
        if self.op_class == CLASS_JMP32 and op in (JUMP_CALL, JUMP_EXIT):
            return -1
        return op

    def is_builtin_call(self) -> bool:
        return self.jump_op() == JUMP_CALL and self.src == 0 and self.dst == 0

    def is_function_call(self) -> bool:
        return self.jump_op() == JUMP_CALL and self.src == PSEUDO_CALL

    def is_function_reference(self) -> bool:
        return self.is_function_call() or (self.is_dword_load() and self.src == PSEUDO_FUNC)

    def is_load_from_map(self) -> bool:
        return self.is_dword_load() and self.src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE)


def decode_instructions(data: bytes, little_endian: bool, part: str, base: int) -> list[Instruction]:
    """Decode a byte range of a program section; ``base`` is its file offset for errors."""
    if len(data) % INSTRUCTION_SIZE:
        raise analysis_error(part, base + len(data) - len(data) % INSTRUCTION_SIZE,
                             f"{len(data)} bytes is not a whole number of instructions")
    layout = struct.Struct("<BBhi" if little_endian else ">BBhi")
    unpack = layout.unpack_from
    instructions: list[Instruction] = []
    position = 0
    while position < len(data):
        opcode, regs, offset, immediate = unpack(data, position)
        if little_endian:
            dst, src = regs & 0xF, regs >> 4
        else:
            dst, src = regs >> 4, regs & 0xF
        instruction = Instruction(opcode, dst, src, offset, immediate)
        _apply_extended_opcode(instruction)
        if opcode == OP_CALL and src == 0 and dst == 0 and immediate >= _HELPER_ID_LIMIT:
            raise analysis_error(part, base + position, f"helper id {immediate} out of range")
        if opcode == OP_LD_IMM_DW:
            if position + 2 * INSTRUCTION_SIZE > len(data):
                raise analysis_error(part, base + position, "LdImmDW is missing its second half")
            if data[position + 8:position + 12] != b"\0\0\0\0":
                raise analysis_error(part, base + position + 8, "LdImmDW second half has non-zero opcode bytes")
            high = unpack(data, position + 8)[3]
            instruction.constant = (high << 32) | (immediate & 0xFFFFFFFF)
            instruction.slots = 2
        instructions.append(instruction)
        position += INSTRUCTION_SIZE * instruction.slots
    return instructions


def _apply_extended_opcode(instruction: Instruction) -> None:
    """Fold signed div/mod, movsx and atomic ops into the opcode as cilium's decoder does."""
    op_class = instruction.op_class
    if op_class in (CLASS_ALU, CLASS_ALU64):
        alu_op = instruction.opcode & 0xF0
        if alu_op in (ALU_DIV, ALU_MOD) and instruction.offset == 1:
            instruction.opcode += 0x100
            instruction.offset = 0
        elif alu_op == ALU_MOV and instruction.offset in _MOVSX_BY_OFFSET:
            instruction.opcode += _MOVSX_BY_OFFSET[instruction.offset]
            instruction.offset = 0
    elif op_class == CLASS_STX and instruction.opcode & 0xE0 == MODE_ATOMIC:
        instruction.opcode |= (instruction.constant << 8) & 0x1FF00


_REGISTER_NAMES = tuple("rfp" if number == 10 else f"r{number}" for number in range(16))


def register_name(register: int) -> str:
    """``asm.Register.String()``: r0-r9, ``rfp`` for r10."""
    return _REGISTER_NAMES[register]


@functools.lru_cache(maxsize=1024)
def opcode_name(opcode: int) -> str:
    """``OpCode.String()`` for cilium's extended opcodes."""
    op_class = opcode & 0x07
    if op_class <= CLASS_STX:
        mode = opcode & 0xE0
        name = _CLASS_NAMES[op_class] + _MODE_NAMES.get(mode, f"Mode({mode})")
        if op_class == CLASS_STX and mode == MODE_ATOMIC:
            atomic = opcode & 0x1FF00
            name += _ATOMIC_NAMES.get(atomic, f"AtomicOp({atomic:#x})")
        return name + _SIZE_NAMES[opcode & 0x18]
    if op_class in (CLASS_ALU, CLASS_ALU64):
        alu_op = opcode & 0x3FF0
        if alu_op == ALU_SWAP:
            if op_class == CLASS_ALU64:
                return "BSwap"
            return "Swap" + ("BE" if opcode & SOURCE_REG else "LE")
        name = _ALU_NAMES.get(alu_op, f"ALUOp({alu_op})")
        name += "Reg" if opcode & SOURCE_REG else "Imm"
        return name + ("32" if op_class == CLASS_ALU else "")
    jump_op = opcode & 0xF0
    if op_class == CLASS_JMP32 and jump_op in (JUMP_CALL, JUMP_EXIT):
        name = "InvalidJumpOp"
        jump_op = -1
    else:
        name = _JUMP_NAMES.get(jump_op, f"JumpOp({jump_op})")
    if op_class == CLASS_JMP32:
        name += "32"
    if jump_op not in (JUMP_EXIT, JUMP_CALL, JUMP_JA):
        name += "Reg" if opcode & SOURCE_REG else "Imm"
    return name


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def format_instruction(instruction: Instruction) -> str:
    """``Instruction.Format`` with verb ``v``: the text after ``N: `` in a listing."""
    opcode = instruction.opcode
    if opcode == INVALID_OPCODE:
        return "INVALID"
    op_name = opcode_name(opcode)
    jump_op = instruction.jump_op()
    if jump_op == JUMP_EXIT:
        return op_name
    dst = register_name(instruction.dst)
    if instruction.is_load_from_map():
        fd = _signed32(instruction.constant)
        if instruction.src == PSEUDO_MAP_FD:
            text = f"LoadMapPtr dst: {dst} fd: {fd}"
        else:
            text = f"LoadMapValue dst: {dst}, fd: {fd} off: {(instruction.constant >> 32) & 0xFFFFFFFF}"
    else:
        text = _format_operands(instruction, op_name, jump_op, dst)
    if instruction.reference:
        text += f" <{instruction.reference}>"
    return text


def _format_operands(instruction: Instruction, op_name: str, jump_op: int | None, dst: str) -> str:
    op_class = instruction.op_class
    src = register_name(instruction.src)
    constant = instruction.constant
    if op_class <= CLASS_STX:
        mode = instruction.opcode & 0xE0
        if mode == MODE_IMM:
            return f"{op_name} dst: {dst} imm: {constant}"
        if mode == MODE_ABS:
            return f"{op_name} imm: {constant}"
        if mode == MODE_IND:
            return f"{op_name} dst: {dst} src: {src} imm: {constant}"
        if mode in (MODE_MEM, MODE_MEMSX):
            return f"{op_name} dst: {dst} src: {src} off: {instruction.offset} imm: {constant}"
        if mode == MODE_ATOMIC:
            return f"{op_name} dst: {dst} src: {src} off: {instruction.offset}"
        return f"{op_name} "
    if op_class in (CLASS_ALU, CLASS_ALU64):
        width = str(constant) if instruction.opcode == 0xD7 else ""
        text = f"{op_name}{width} dst: {dst} "
        if instruction.opcode & 0x3FF0 == ALU_SWAP:
            return text
        return text + (f"src: {src}" if instruction.opcode & SOURCE_REG else f"imm: {constant}")
    if jump_op == JUMP_CALL:
        if instruction.src == PSEUDO_CALL:
            return f"Call {instruction.offset if instruction.offset else constant}"
        if instruction.src == PSEUDO_KFUNC_CALL:
            return f"Call Kfunc({constant})"
        return f"Call {helper_name(constant)}"
    if jump_op == JUMP_JA:
        if op_class == CLASS_JMP32:
            return f"{op_name} imm: {constant}"
        return f"{op_name} off: {instruction.offset}"
    if jump_op == JUMP_COND:
        return f"JCond may_goto off: {instruction.offset}" if instruction.src == 0 else op_name
    operand = f"src: {src}" if instruction.opcode & SOURCE_REG else f"imm: {constant}"
    return f"{op_name} dst: {dst} off: {instruction.offset} {operand}"
