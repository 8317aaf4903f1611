"""Parser for ``.BTF.ext``: per-section func_info, line_info and CO-RE relocation records.

The listing of ``ebpf.programs`` interleaves source lines (line_info) and, in
``SourceWithRelocation``, CO-RE relocations; both are keyed by ELF section name and by
instruction slot, which is what this module produces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gadgetstore.engine.analysis.binreader import ByteReader
from gadgetstore.engine.analysis.btf import BTF_MAGIC, KIND_FUNC, Btf

FUNC_INFO_SIZE = 8
LINE_INFO_SIZE = 16
CORE_RELO_SIZE = 16

# btf/core.go COREKind names, indexed by the kind value stored in bpf_core_relo.
CORE_KIND_NAMES = (
    "byte_off", "byte_sz", "field_exists", "signed", "lshift_u64", "rshift_u64", "local_type_id",
    "target_type_id", "type_exists", "type_size", "enumval_exists", "enumval_value", "type_matches",
)


@dataclass(frozen=True, slots=True)
class FuncInfo:
    insn: int
    type_id: int


@dataclass(frozen=True, slots=True)
class LineInfo:
    insn: int
    file_name: str
    line: str
    line_number: int
    column: int


@dataclass(frozen=True, slots=True)
class CoreRelocation:
    insn: int
    type_id: int
    accessor: tuple[int, ...]
    kind: int

    def go_string(self, btf: Btf) -> str:
        """cilium's ``CORERelocation(kind, Type[accessor], local_id=N)`` text."""
        kind_name = CORE_KIND_NAMES[self.kind] if self.kind < len(CORE_KIND_NAMES) else f"unknown ({self.kind})"
        accessor = ":".join(str(index) for index in self.accessor)
        type_text = btf.get(self.type_id, "BTF.ext CO-RE relocation").go_string()
        return f"CORERelocation({kind_name}, {type_text}[{accessor}], local_id={self.type_id})"


@dataclass(slots=True)
class BtfExt:
    """Records grouped by ELF section name, each list in file order (sorted by ``insn``)."""

    func_infos: dict[str, list[FuncInfo]] = field(default_factory=dict)
    line_infos: dict[str, list[LineInfo]] = field(default_factory=dict)
    core_relocations: dict[str, list[CoreRelocation]] = field(default_factory=dict)


def parse_btf_ext(data: bytes, btf: Btf, base: int = 0) -> BtfExt:
    """Decode ``.BTF.ext`` using ``btf`` for section names, source lines and access strings."""
    header = ByteReader(data, "BTF.ext header", little_endian=btf.little_endian, base=base)
    magic = header.u16(0, "magic")
    if magic != BTF_MAGIC:
        raise header.error(0, f"bad magic 0x{magic:04x}")
    if header.u8(2, "version") != 1:
        raise header.error(2, f"unsupported version {header.u8(2)}")
    if header.u8(3, "flags") != 0:
        raise header.error(3, f"unsupported flags 0x{header.u8(3):02x}")
    header_len = header.u32(4, "hdr_len")
    if header_len < 24 or header_len > len(data):
        raise header.error(4, f"invalid hdr_len {header_len}")
    func_off, func_len, line_off, line_len = header.u32_array(8, 4, "info offsets")
    core_off = core_len = 0
    if header_len >= 32:
        core_off, core_len = header.u32_array(24, 2, "CO-RE offsets")
    result = BtfExt()
    reader = ByteReader(data, "BTF.ext", little_endian=btf.little_endian, base=base)
    for sec_name, start, records in _iter_blocks(reader, btf, "func_info", header_len + func_off, func_len,
                                                 FUNC_INFO_SIZE):
        infos = []
        for i, (insn_off, type_id) in enumerate(records):
            position = start + i * FUNC_INFO_SIZE
            if btf.get(type_id, "BTF.ext func_info").kind != KIND_FUNC:
                raise reader.error(position, f"func_info type {type_id} is not a FUNC")
            infos.append(FuncInfo(_insn_index(reader, position, insn_off), type_id))
        result.func_infos[sec_name] = infos
    for sec_name, start, records in _iter_blocks(reader, btf, "line_info", header_len + line_off, line_len,
                                                 LINE_INFO_SIZE):
        result.line_infos[sec_name] = [
            LineInfo(_insn_index(reader, start + i * LINE_INFO_SIZE, insn_off),
                     btf.string_at(file_off, "BTF.ext line_info file name"),
                     btf.string_at(line_text_off, "BTF.ext line_info line"), line_col >> 10, line_col & 0x3FF)
            for i, (insn_off, file_off, line_text_off, line_col) in enumerate(records)]
    if core_len:
        for sec_name, start, records in _iter_blocks(reader, btf, "core_relo", header_len + core_off, core_len,
                                                     CORE_RELO_SIZE):
            relocations = []
            for i, (insn_off, type_id, access_off, kind) in enumerate(records):
                position = start + i * CORE_RELO_SIZE
                btf.get(type_id, "BTF.ext CO-RE relocation")
                access = btf.string_at(access_off, "BTF.ext CO-RE access string")
                relocations.append(CoreRelocation(_insn_index(reader, position, insn_off), type_id,
                                                  _parse_accessor(reader, position, access), kind))
            result.core_relocations[sec_name] = relocations
    return result


def _iter_blocks(reader: ByteReader, btf: Btf, what: str, start: int, length: int,
                 record_size: int) -> list[tuple[str, int, list[tuple[int, ...]]]]:
    """Split one sub-section into ``(section name, first record offset, records)`` blocks."""
    if length == 0:
        return []
    reader.need(start, length, f"{what} sub-section")
    end = start + length
    rec_size = reader.u32(start, f"{what} rec_size")
    if rec_size != record_size:
        raise reader.error(start, f"{what} rec_size {rec_size}, expected {record_size}")
    words_per_record = record_size // 4
    blocks = []
    offset = start + 4
    while offset < end:
        if offset + 8 > end:
            raise reader.error(offset, f"{what} block header truncated")
        name_off, count = reader.u32_array(offset, 2, f"{what} block header")
        sec_name = btf.string_at(name_off, f"BTF.ext {what} section name")
        first = offset + 8
        if first + count * record_size > end:
            raise reader.error(offset, f"{what} block of {count} records for {sec_name!r} overruns its sub-section")
        words = reader.u32_array(first, count * words_per_record, f"{what} records")
        records = [words[i * words_per_record:(i + 1) * words_per_record] for i in range(count)]
        blocks.append((sec_name, first, records))
        offset = first + count * record_size
    return blocks


def _insn_index(reader: ByteReader, position: int, insn_off: int) -> int:
    """ELF objects store byte offsets; the listing needs instruction slots."""
    if insn_off % 8:
        raise reader.error(position, f"instruction offset {insn_off} is not a multiple of 8")
    return insn_off // 8


def _parse_accessor(reader: ByteReader, position: int, access: str) -> tuple[int, ...]:
    parts = access.split(":")
    if not access or not all(part.isascii() and part.isdigit() for part in parts):
        raise reader.error(position, f"CO-RE access string {access!r} is not colon-separated numbers")
    return tuple(int(part) for part in parts)
