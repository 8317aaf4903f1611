"""Program decoding as cilium/ebpf's ELF reader does it: functions, relocations, BTF.ext metadata.

Each function symbol of a program section is decoded, tagged with its name, patched by the
section's REL entries (map loads, data references, bpf-to-bpf calls, externs), annotated
with line info and CO-RE relocations, and finally flattened with its callees so that the
listing matches ``ProgramSpec.Instructions`` of a freshly loaded spec.
"""

from __future__ import annotations

from collections import deque

from gadgetstore.engine.analysis import btf as btfkinds
from gadgetstore.engine.analysis.binreader import encode_text
from gadgetstore.engine.analysis.btf import Btf
from gadgetstore.engine.analysis.btfext import BtfExt
from gadgetstore.engine.analysis.elffile import (
    SHN_UNDEF,
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    STT_FUNC,
    STT_NOTYPE,
    STT_OBJECT,
    STT_SECTION,
    ElfSection,
    ElfSymbol,
)
from gadgetstore.engine.analysis.insn import (
    INSTRUCTION_SIZE,
    JUMP_CALL,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
    Instruction,
    decode_instructions,
)
from gadgetstore.engine.analysis.spec import ElfLayout, ProgramSpec, SectionKind
from gadgetstore.engine.errors import AnalysisError

_MASK64 = (1 << 64) - 1


def load_programs(layout: ElfLayout, btf: Btf, btf_ext: BtfExt) -> dict[str, ProgramSpec]:
    """Return programs keyed by function name, sorted by name, with ``.text`` subprograms removed."""
    functions: dict[str, tuple[ElfSection, list[Instruction]]] = {}
    relocator = _Relocator(layout, btf)
    for section in layout.elf.sections:
        if layout.kinds[section.index] is SectionKind.PROGRAM:
            for name, instructions in _load_functions(layout, section, btf_ext, relocator).items():
                if name in functions:
                    raise AnalysisError(f"ELF section {section.name!r}: duplicate program name {name!r} "
                                        f"at byte offset {section.header_offset}")
                functions[name] = (section, instructions)
    references = {name: _function_references(instructions) for name, (_, instructions) in functions.items()}
    programs = {}
    for name in sorted(functions, key=encode_text):
        section = functions[name][0]
        if section.name != ".text":
            programs[name] = ProgramSpec(name, section.name, _flatten(name, functions, references))
    return programs


def _load_functions(layout: ElfLayout, section: ElfSection, btf_ext: BtfExt,
                    relocator: _Relocator) -> dict[str, list[Instruction]]:
    """``loadFunctions``: decode each symbol's range, relocate, then attach BTF.ext metadata."""
    symbols = layout.symbols[section.index]
    if not symbols:
        raise AnalysisError(f"ELF section {section.name!r}: program section without function symbols "
                            f"at byte offset {section.header_offset}")
    data = layout.elf.section_data(section)
    relocations = layout.relocations.get(section.index, {})
    line_infos = deque(btf_ext.line_infos.get(section.name, ()))
    core_relocations = deque(btf_ext.core_relocations.get(section.name, ()))
    functions: dict[str, list[Instruction]] = {}
    raw_slot = 0  # counts across functions in offset order, as cilium's `raw`
    for start in sorted(symbols):
        symbol = symbols[start]
        part = f"ELF section {section.name!r} function {symbol.name!r}"
        if symbol.name in functions:
            raise AnalysisError(f"{part}: duplicate symbol at byte offset {section.offset + start}")
        if start + symbol.size > section.size:
            raise AnalysisError(f"{part}: [{start}, {start + symbol.size}) runs past the {section.size}-byte "
                                f"section at byte offset {section.offset + start}")
        instructions = decode_instructions(data[start:start + symbol.size], layout.elf.little_endian, part,
                                           section.offset + start)
        if not instructions:
            raise AnalysisError(f"{part}: no instructions at byte offset {section.offset + start}")
        instructions[0].symbol = symbol.name
        offset = start
        for instruction in instructions:
            where = section.offset + offset
            target = relocations.get(offset)
            if target is not None:
                relocator.relocate(instruction, target, f"{part} relocation to {target.name!r}", where)
            else:
                _reference_relative_call(instruction, offset, symbols, part, where)
            if line_infos and line_infos[0].insn == raw_slot:
                instruction.source_line = line_infos.popleft().line
            if core_relocations and core_relocations[0].insn == raw_slot:
                instruction.core_relocation = core_relocations.popleft()
            offset += INSTRUCTION_SIZE * instruction.slots
            raw_slot += instruction.slots
        functions[symbol.name] = instructions
    return functions


def _reference_relative_call(instruction: Instruction, offset: int, symbols: dict[int, ElfSymbol],
                             part: str, where: int) -> None:
    """LLVM <= 9 calls same-section subprograms by relative offset, without a relocation."""
    if not instruction.is_function_reference() or instruction.constant == -1:
        return
    target = max(0, offset + INSTRUCTION_SIZE + instruction.constant * INSTRUCTION_SIZE)
    symbol = symbols.get(target)
    if symbol is None:
        raise AnalysisError(f"{part}: no jump target at section offset {target} at byte offset {where}")
    instruction.reference = symbol.name
    instruction.constant = -1


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class _Relocator:
    """Applies one REL entry following ``elf_reader.go`` ``relocateInstruction``."""

    def __init__(self, layout: ElfLayout, btf: Btf) -> None:
        self.layout = layout
        self.kconfig = btf.find_datasec(".kconfig")
        self.kconfig_names = {btf.get(info.type_id).name for info in self.kconfig.secinfos} if self.kconfig else set()
        self.kfuncs: set[str] = set()
        self.ksyms: set[str] = set()
        ksyms = btf.find_datasec(".ksyms")
        for info in ksyms.secinfos if ksyms else ():
            entry = btf.get(info.type_id)
            if entry.kind == btfkinds.KIND_FUNC:
                self.kfuncs.add(entry.name)
            elif entry.kind == btfkinds.KIND_VAR:
                self.ksyms.add(entry.name)
            else:
                raise AnalysisError(f"BTF: unexpected {btfkinds.GO_KIND_NAMES[entry.kind]} in .ksyms "
                                    f"at byte offset {entry.record_offset}")

    def relocate(self, instruction: Instruction, symbol: ElfSymbol, part: str, where: int) -> None:
        if symbol.shndx == SHN_UNDEF:
            name: str | None = self._relocate_extern(instruction, symbol, part, where)
        else:
            kind = self.layout.kinds[symbol.shndx]
            if kind in (SectionKind.LEGACY_MAPS, SectionKind.BTF_MAPS):
                name = self._relocate_map(instruction, symbol, part, where)
            elif kind is SectionKind.DATA:
                name = self._relocate_data(instruction, symbol, part, where)
            elif kind is SectionKind.PROGRAM:
                name = self._relocate_function(instruction, symbol, part, where)
            else:
                raise AnalysisError(f"{part}: relocation into a {kind.value} section is not supported "
                                    f"at byte offset {where}")
        if name is not None:
            instruction.reference = name

    @staticmethod
    def _relocate_map(instruction: Instruction, symbol: ElfSymbol, part: str, where: int) -> str:
        if symbol.bind != STB_GLOBAL:
            raise AnalysisError(f"{part}: map symbol must be global (static map definition?) at byte offset {where}")
        if symbol.type not in (STT_OBJECT, STT_NOTYPE):
            raise AnalysisError(f"{part}: map symbol has type {symbol.type} at byte offset {where}")
        instruction.src = PSEUDO_MAP_FD
        return symbol.name

    def _relocate_data(self, instruction: Instruction, symbol: ElfSymbol, part: str, where: int) -> str:
        allowed_bindings = {STT_SECTION: (STB_LOCAL,), STT_OBJECT: (STB_GLOBAL, STB_LOCAL, STB_WEAK),
                            STT_NOTYPE: (STB_LOCAL,)}.get(symbol.type)
        if allowed_bindings is None or symbol.bind not in allowed_bindings:
            raise AnalysisError(f"{part}: unsupported data symbol (type {symbol.type}, binding {symbol.bind}) "
                                f"at byte offset {where}")
        # A section symbol carries the offset in the instruction itself (static data).
        offset = instruction.constant if symbol.type == STT_SECTION else symbol.value
        instruction.constant = (offset & 0xFFFFFFFF) << 32
        instruction.src = PSEUDO_MAP_VALUE
        return self.layout.elf.sections[symbol.shndx].name

    def _relocate_function(self, instruction: Instruction, symbol: ElfSymbol, part: str, where: int) -> str:
        functions = self.layout.symbols[symbol.shndx]
        if instruction.jump_op() == JUMP_CALL:
            if instruction.src != PSEUDO_CALL:
                raise AnalysisError(f"{part}: call relocation with source register {instruction.src} "
                                    f"at byte offset {where}")
            if symbol.type in (STT_NOTYPE, STT_FUNC) and symbol.bind in (STB_GLOBAL, STB_WEAK):
                return symbol.name
            if symbol.type != STT_SECTION or symbol.bind != STB_LOCAL:
                raise AnalysisError(f"{part}: call to unsupported symbol at byte offset {where}")
            target = functions.get((_signed32(instruction.constant) + 1) * INSTRUCTION_SIZE)
            if target is None:
                raise AnalysisError(f"{part}: call to a section offset with no function at byte offset {where}")
            instruction.constant = -1
            return target.name
        if instruction.is_dword_load():
            if not ((symbol.type == STT_FUNC and symbol.bind == STB_GLOBAL)
                    or (symbol.type == STT_SECTION and symbol.bind == STB_LOCAL)):
                raise AnalysisError(f"{part}: function pointer to unsupported symbol at byte offset {where}")
            target = functions.get(instruction.constant & _MASK64)
            if target is None:
                raise AnalysisError(f"{part}: function pointer to a section offset with no function "
                                    f"at byte offset {where}")
            instruction.constant = -1
            instruction.src = PSEUDO_FUNC
            return target.name
        raise AnalysisError(f"{part}: neither a call nor a 64-bit load at byte offset {where}")

    def _relocate_extern(self, instruction: Instruction, symbol: ElfSymbol, part: str, where: int) -> str | None:
        """Undefined symbols: kfuncs and ksyms from ``.ksyms``, kconfig values, inline-asm names."""
        if symbol.bind not in (STB_GLOBAL, STB_WEAK) or symbol.type != STT_NOTYPE:
            raise AnalysisError(f"{part}: extern must be a global NOTYPE symbol at byte offset {where}")
        if symbol.name in self.kfuncs and instruction.jump_op() == JUMP_CALL:
            instruction.src = PSEUDO_KFUNC_CALL
            instruction.constant = -1
        elif symbol.name in self.kfuncs and instruction.is_dword_load():
            instruction.constant = 0
        elif symbol.name in self.ksyms and instruction.is_dword_load():
            pass
        elif self.kconfig is not None and instruction.is_dword_load():
            if symbol.bind != STB_GLOBAL or symbol.name not in self.kconfig_names:
                raise AnalysisError(f"{part}: kconfig value not found in .kconfig at byte offset {where}")
            instruction.src = PSEUDO_MAP_VALUE
            return None  # cilium returns before tagging kconfig loads with a reference
        return symbol.name


def _function_references(instructions: list[Instruction]) -> list[str]:
    """Sorted unique callees (calls and function-pointer loads) of unflattened instructions."""
    return sorted({instruction.reference for instruction in instructions
                   if instruction.constant == -1 and instruction.reference and instruction.is_function_reference()})


def _flatten(name: str, functions: dict[str, tuple[ElfSection, list[Instruction]]],
             references: dict[str, list[str]]) -> list[Instruction]:
    """Append callees breadth-first like ``linker.go flattenInstructions`` (extern names skipped)."""
    instructions = list(functions[name][1])
    pending = deque(references[name])
    linked: set[str] = set()
    while pending:
        callee = pending.popleft()
        if callee in linked or callee not in functions:
            continue
        instructions.extend(functions[callee][1])
        linked.add(callee)
        pending.extend(references[callee])
    return instructions
