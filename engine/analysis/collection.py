"""Rebuild the parts of cilium/ebpf's ``CollectionSpec`` that ``ig image inspect`` reports.

IG computes its ``ebpf.*`` extra info from the unmodified spec returned by
``ebpf.LoadCollectionSpecFromReader``; this module applies the same section classification,
symbol assignment, relocation bookkeeping, map discovery (BTF ``.maps``, legacy ``maps*``,
data sections) and variable rules, and rejects what cilium rejects, so that an ELF we
describe is one IG would describe too. Program decoding lives in :mod:`.programs`.
"""

from __future__ import annotations

from gadgetstore.engine.analysis import btf as btfkinds
from gadgetstore.engine.analysis.btf import Btf, parse_btf
from gadgetstore.engine.analysis.btfext import BtfExt, parse_btf_ext
from gadgetstore.engine.analysis.elffile import (
    SHF_EXECINSTR,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_PROGBITS,
    SHT_REL,
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    STT_FUNC,
    STT_NOTYPE,
    STT_OBJECT,
    STV_HIDDEN,
    STV_INTERNAL,
    ElfObject,
    ElfSection,
    ElfSymbol,
)
from gadgetstore.engine.analysis.programs import load_programs
from gadgetstore.engine.analysis.spec import (
    MAP_TYPE_ARRAY,
    MAP_TYPE_STRUCT_OPS,
    CollectionSpec,
    ElfLayout,
    MapSpec,
    SectionKind,
    VariableSpec,
)
from gadgetstore.engine.errors import AnalysisError

_BTF_MAP_MEMBERS = frozenset({"type", "map_flags", "max_entries", "key", "key_size", "value", "value_size",
                              "pinning", "map_extra", "values"})
# Sections cilium keeps in ``elfCode.sections`` (the only valid relocation sources/targets).
_TRACKED_KINDS = frozenset({SectionKind.LEGACY_MAPS, SectionKind.BTF_MAPS, SectionKind.DATA, SectionKind.PROGRAM,
                            SectionKind.STRUCT_OPS})
_LEGACY_MAP_FIELDS = ("type", "key size", "value size", "max entries", "flags")


def is_data_section(name: str) -> bool:
    return name == ".bss" or name.startswith((".data", ".rodata"))


def classify_section(section: ElfSection) -> SectionKind:
    """First-match classification of ``LoadCollectionSpecFromReader``."""
    name = section.name
    if name.startswith("license"):
        return SectionKind.LICENSE
    if name.startswith("version"):
        return SectionKind.VERSION
    if name.startswith("maps"):
        return SectionKind.LEGACY_MAPS
    if name == ".maps":
        return SectionKind.BTF_MAPS
    if is_data_section(name):
        return SectionKind.DATA
    if section.type == SHT_REL:
        return SectionKind.RELOCATIONS
    if section.type == SHT_PROGBITS and section.size > 0:
        if section.flags & SHF_EXECINSTR:
            return SectionKind.PROGRAM
        if name == ".struct_ops.link":
            return SectionKind.STRUCT_OPS
        if name == ".struct_ops":
            raise AnalysisError(f"ELF section '.struct_ops': not supported by IG at byte offset "
                                f"{section.header_offset}")
    return SectionKind.OTHER


def load_collection(data: bytes) -> CollectionSpec:
    """Parse an eBPF ELF object into the spec pieces ``ig image inspect`` reports."""
    elf = ElfObject(data)
    kinds = {section.index: classify_section(section) for section in elf.sections}
    btf, btf_ext = _load_btf(elf)
    layout = ElfLayout(elf, kinds, _assign_symbols(elf, kinds), {}, {})
    _load_relocations(layout)
    maps: dict[str, MapSpec] = {}
    for section in elf.sections:
        kind = kinds[section.index]
        if kind is SectionKind.LEGACY_MAPS:
            _add_maps(maps, _legacy_maps(layout, section))
        elif kind is SectionKind.BTF_MAPS:
            _add_maps(maps, _btf_maps(layout, btf, section))
    variables: dict[str, VariableSpec] = {}
    for section in elf.sections:
        if kinds[section.index] is SectionKind.DATA and (layout.references.get(section.index)
                                                         or layout.symbols[section.index]):
            for variable in _data_section_variables(layout, btf, section):
                if variable.name in variables:
                    raise AnalysisError(f"ELF section {section.name!r}: duplicate variable {variable.name!r} "
                                        f"at byte offset {section.header_offset}")
                variables[variable.name] = variable
            _add_maps(maps, [MapSpec(section.name, MAP_TYPE_ARRAY)])
    for section in elf.sections:
        if kinds[section.index] is SectionKind.STRUCT_OPS:
            _add_maps(maps, _struct_ops_maps(btf, section))
    programs = load_programs(layout, btf, btf_ext)
    return CollectionSpec([section.name for section in elf.sections], maps, list(variables.values()), programs, btf)


def _load_btf(elf: ElfObject) -> tuple[Btf, BtfExt]:
    btf_section = elf.section_named(".BTF")
    if btf_section is None:
        raise AnalysisError("ELF: no .BTF section (IG requires BTF) at byte offset 0")
    btf = parse_btf(elf.section_data(btf_section), btf_section.offset)
    if btf.little_endian != elf.little_endian:
        raise AnalysisError(f"BTF header: byte order differs from the ELF's at byte offset {btf_section.offset}")
    ext_section = elf.section_named(".BTF.ext")
    if ext_section is None:
        return btf, BtfExt()
    return btf, parse_btf_ext(elf.section_data(ext_section), btf, ext_section.offset)


def _assign_symbols(elf: ElfObject, kinds: dict[int, SectionKind]) -> dict[int, dict[int, ElfSymbol]]:
    """Named symbols per tracked section, keyed by offset, with cilium's per-kind type filter."""
    result: dict[int, dict[int, ElfSymbol]] = {index: {} for index, kind in kinds.items() if kind in _TRACKED_KINDS}
    for symbol in elf.symbols[1:]:
        by_offset = result.get(symbol.shndx)
        if by_offset is None or not symbol.name:
            continue
        kind = kinds[symbol.shndx]
        if kind is SectionKind.PROGRAM:
            if symbol.type not in (STT_NOTYPE, STT_FUNC) or (symbol.type == STT_NOTYPE and symbol.bind == STB_LOCAL):
                continue  # local NOTYPE symbols are jump labels
        elif kind is SectionKind.STRUCT_OPS or symbol.type not in (STT_NOTYPE, STT_OBJECT):
            continue
        by_offset[symbol.value] = symbol
    return result


def _load_relocations(layout: ElfLayout) -> None:
    """REL entries of tracked sections; ``.rel.BTF`` and friends are ignored like cilium does."""
    elf = layout.elf
    for section in elf.sections:
        if layout.kinds[section.index] is not SectionKind.RELOCATIONS or section.info not in layout.symbols:
            continue
        entries: dict[int, ElfSymbol] = {}
        for entry in elf.relocations(section):
            if not 0 < entry.symbol_index < len(elf.symbols):
                raise AnalysisError(f"ELF relocations {section.name!r}: symbol index {entry.symbol_index} "
                                    f"does not exist at byte offset {section.offset}")
            symbol = elf.symbols[entry.symbol_index]
            if symbol.shndx != SHN_UNDEF and symbol.shndx not in layout.symbols:
                target = elf.sections[symbol.shndx].name if symbol.shndx < len(elf.sections) else str(symbol.shndx)
                raise AnalysisError(f"ELF relocations {section.name!r}: reference to {symbol.name!r} in "
                                    f"unsupported section {target!r} at byte offset {section.offset}")
            layout.references[symbol.shndx] = layout.references.get(symbol.shndx, 0) + 1
            entries[entry.offset] = symbol
        layout.relocations[section.info] = entries


def _add_maps(maps: dict[str, MapSpec], new_maps: list[MapSpec]) -> None:
    for spec in new_maps:
        if spec.key in maps:
            raise AnalysisError(f"ELF: duplicate map {spec.key!r} at byte offset 0")
        maps[spec.key] = spec


def _symbol_bytes(layout: ElfLayout, section: ElfSection, symbol: ElfSymbol) -> bytes:
    if symbol.value + symbol.size > section.size:
        raise AnalysisError(f"ELF section {section.name!r}: symbol {symbol.name!r} runs past the section "
                            f"at byte offset {section.offset + symbol.value}")
    return layout.elf.section_data(section)[symbol.value:symbol.value + symbol.size]


def _legacy_maps(layout: ElfLayout, section: ElfSection) -> list[MapSpec]:
    """``maps*`` sections: each symbol is a ``bpf_map_def`` of at least five u32 fields."""
    symbols = layout.symbols[section.index]
    if not symbols:
        raise AnalysisError(f"ELF section {section.name!r}: no symbols at byte offset {section.header_offset}")
    result = []
    for symbol in symbols.values():
        definition = _symbol_bytes(layout, section, symbol)
        if len(definition) < 4 * len(_LEGACY_MAP_FIELDS):
            missing = _LEGACY_MAP_FIELDS[len(definition) // 4]
            raise AnalysisError(f"ELF section {section.name!r}: map {symbol.name!r} is missing its {missing} "
                                f"at byte offset {section.offset + symbol.value}")
        map_type = int.from_bytes(definition[:4], "little") if layout.elf.little_endian \
            else int.from_bytes(definition[:4], "big")
        result.append(MapSpec(symbol.name, map_type))
    return result


def _btf_maps(layout: ElfLayout, btf: Btf, section: ElfSection) -> list[MapSpec]:
    """``.maps``: map definitions are the VARs of the ``.maps`` DATASEC (``loadBTFMaps``)."""
    where = section.header_offset
    datasec = btf.find_datasec(section.name)
    variables = [btf.get(info.type_id) for info in datasec.secinfos] if datasec else []
    if any(var.kind != btfkinds.KIND_VAR for var in variables):
        raise AnalysisError(f"BTF: DATASEC {section.name!r} holds a non-VAR entry at byte offset {where}")
    symbols_by_name = {symbol.name: symbol for symbol in layout.symbols[section.index].values()}
    if len({var.name for var in variables}) != len(layout.symbols[section.index]):
        raise AnalysisError(f"ELF section {section.name!r}: {len(layout.symbols[section.index])} symbols but "
                            f"{len(variables)} BTF VARs at byte offset {where}")
    result = []
    for var in variables:
        symbol = symbols_by_name.get(var.name)
        if symbol is None:
            raise AnalysisError(f"ELF section {section.name!r}: no symbol for map {var.name!r} at byte offset {where}")
        if any(_symbol_bytes(layout, section, symbol)):
            raise AnalysisError(f"ELF section {section.name!r}: map {var.name!r} has non-zero initial data "
                                f"at byte offset {section.offset + symbol.value}")
        definition = btf.skip_qualifiers(var.ref)
        if definition.kind != btfkinds.KIND_STRUCT:
            raise AnalysisError(f"BTF: map {var.name!r} is not defined by a struct "
                                f"at byte offset {definition.record_offset}")
        result.append(MapSpec(var.name, _btf_map_type(btf, var.name, definition)))
    return result


def _btf_map_type(btf: Btf, map_name: str, definition: btfkinds.BtfType) -> int:
    """The ``type`` member of a BTF map definition, validating the members cilium checks."""
    map_type = 0
    sized: set[str] = set()
    for member in definition.members:
        name = member.name
        if name not in _BTF_MAP_MEMBERS:
            raise AnalysisError(f"BTF: map {map_name!r} has unrecognised member {name!r} "
                                f"at byte offset {definition.record_offset}")
        if name in ("key", "value"):
            pointer = btf.get(member.type_id)
            if pointer.kind != btfkinds.KIND_PTR:
                raise AnalysisError(f"BTF: map {map_name!r} {name} is not a pointer "
                                    f"at byte offset {pointer.record_offset}")
            btf.size_of(pointer.ref)
        if name in ("key", "key_size", "value", "value_size"):
            field = name.removesuffix("_size")
            if field in sized:
                raise AnalysisError(f"BTF: map {map_name!r} gives both {field} and {field}_size "
                                    f"at byte offset {definition.record_offset}")
            sized.add(field)
        if name in ("type", "map_flags", "max_entries", "key_size", "value_size", "pinning", "map_extra"):
            value = _uint_from_btf(btf, member.type_id, map_name)
            if name == "type":
                map_type = value & 0xFFFFFFFF
    return map_type


def _uint_from_btf(btf: Btf, type_id: int, map_name: str) -> int:
    """Decode ``__uint(x, N)`` (pointer to ``int[N]``) or ``__ulong(x, N)`` (enum)."""
    member_type = btf.get(type_id)
    if member_type.kind == btfkinds.KIND_PTR:
        target = btf.get(member_type.ref)
        if target.kind == btfkinds.KIND_ARRAY:
            return target.array_nelems
    elif member_type.kind in (btfkinds.KIND_ENUM, btfkinds.KIND_ENUM64) and member_type.enum_values:
        return member_type.enum_values[0][1] & 0xFFFFFFFFFFFFFFFF
    raise AnalysisError(f"BTF: map {map_name!r} integer member is neither __uint nor __ulong "
                        f"at byte offset {member_type.record_offset}")


def _struct_ops_maps(btf: Btf, section: ElfSection) -> list[MapSpec]:
    """``.struct_ops.link``: one StructOpsMap per VAR of the section's DATASEC."""
    datasec = btf.find_datasec(section.name)
    if datasec is None:
        raise AnalysisError(f"BTF: no DATASEC for {section.name!r} at byte offset {section.header_offset}")
    result = []
    for info in datasec.secinfos:
        var = btf.get(info.type_id)
        user_struct = btf.skip_qualifiers(var.ref) if var.kind == btfkinds.KIND_VAR else var
        if var.kind != btfkinds.KIND_VAR or user_struct.kind != btfkinds.KIND_STRUCT:
            raise AnalysisError(f"BTF: {section.name!r} entry {var.name!r} is not a struct variable "
                                f"at byte offset {var.record_offset}")
        if info.offset + user_struct.size > section.size:
            raise AnalysisError(f"ELF section {section.name!r}: {var.name!r} exceeds the section "
                                f"at byte offset {section.offset + info.offset}")
        result.append(MapSpec(var.name, MAP_TYPE_STRUCT_OPS))
    return result


def _data_section_variables(layout: ElfLayout, btf: Btf, section: ElfSection) -> list[VariableSpec]:
    """Global, visible, named objects of a kept data section (``loadDataSections``)."""
    if section.type not in (SHT_PROGBITS, SHT_NOBITS):
        raise AnalysisError(f"ELF section {section.name!r}: data section of unknown type {section.type} "
                            f"at byte offset {section.header_offset}")
    variables = []
    for offset, symbol in layout.symbols[section.index].items():
        if (symbol.visibility in (STV_HIDDEN, STV_INTERNAL) or symbol.bind not in (STB_GLOBAL, STB_WEAK)
                or symbol.name.startswith(".")):
            continue
        if offset + symbol.size > section.size:
            raise AnalysisError(f"ELF section {section.name!r}: variable {symbol.name!r} exceeds the section "
                                f"at byte offset {section.offset + offset}")
        variables.append(VariableSpec(symbol.name, offset, symbol.size, section.name))
    datasec = btf.find_datasec(section.name)
    sizes = {btf.get(info.type_id).name: info.size for info in datasec.secinfos} if datasec else {}
    for variable in variables:
        if variable.name in sizes and sizes[variable.name] != variable.size:
            raise AnalysisError(f"BTF: DATASEC {section.name!r} gives {variable.name!r} size "
                                f"{sizes[variable.name]}, ELF symbol says {variable.size} "
                                f"at byte offset {section.header_offset}")
    return variables
