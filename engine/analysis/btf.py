"""Parser for the ``.BTF`` section of a BPF ELF object (all 19 kinds of uapi ``linux/btf.h``).

pyelftools has no BTF support, and the listing/maps outputs of ``ig image inspect`` need the
type graph (``.maps`` definitions, CO-RE relocation type names, DATASEC checks), so the
type section is decoded here record by record with every read bounds-checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gadgetstore.engine.analysis.binreader import ByteReader, decode_name
from gadgetstore.engine.errors import AnalysisError

BTF_MAGIC = 0xEB9F

KIND_VOID = 0
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

# The names cilium/ebpf gives each kind's Go type; CO-RE relocation text prints them.
GO_KIND_NAMES: dict[int, str] = {
    KIND_VOID: "Void", KIND_INT: "Int", KIND_PTR: "Pointer", KIND_ARRAY: "Array",
    KIND_STRUCT: "Struct", KIND_UNION: "Union", KIND_ENUM: "Enum", KIND_FWD: "Fwd",
    KIND_TYPEDEF: "Typedef", KIND_VOLATILE: "Volatile", KIND_CONST: "Const",
    KIND_RESTRICT: "Restrict", KIND_FUNC: "Func", KIND_FUNC_PROTO: "FuncProto", KIND_VAR: "Var",
    KIND_DATASEC: "Datasec", KIND_FLOAT: "Float", KIND_DECL_TAG: "declTag",
    KIND_TYPE_TAG: "TypeTag", KIND_ENUM64: "Enum",
}

# Kinds whose third header word is a size; all others (except INT-less FWD) carry a type id.
_SIZED_KINDS = frozenset({KIND_INT, KIND_ENUM, KIND_STRUCT, KIND_UNION, KIND_DATASEC, KIND_ENUM64, KIND_FLOAT})
_REF_KINDS = frozenset({KIND_PTR, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC,
                        KIND_FUNC_PROTO, KIND_VAR, KIND_DECL_TAG, KIND_TYPE_TAG})
QUALIFIER_KINDS = frozenset({KIND_TYPEDEF, KIND_CONST, KIND_VOLATILE, KIND_RESTRICT, KIND_TYPE_TAG})
_MAX_CHAIN = 64  # deeper qualifier/array chains only happen in hostile input


@dataclass(frozen=True, slots=True)
class BtfMember:
    """A struct/union member; ``bit_offset`` is already split from the bitfield size."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int


@dataclass(frozen=True, slots=True)
class BtfSecinfo:
    """One variable placement inside a DATASEC."""

    type_id: int
    offset: int
    size: int


@dataclass(slots=True)
class BtfType:
    """One decoded type record; only the fields meaningful for ``kind`` are set (never mutated after parsing)."""

    type_id: int
    kind: int
    name: str
    kind_flag: bool
    vlen: int
    size: int = 0
    ref: int = 0
    record_offset: int = 0
    int_encoding: int = 0
    int_bit_offset: int = 0
    int_bits: int = 0
    array_elem: int = 0
    array_index: int = 0
    array_nelems: int = 0
    members: tuple[BtfMember, ...] = ()
    enum_values: tuple[tuple[str, int], ...] = ()
    params: tuple[tuple[str, int], ...] = ()
    secinfos: tuple[BtfSecinfo, ...] = ()
    linkage: int = 0
    component_idx: int = 0

    def go_string(self) -> str:
        """``%s`` formatting of a cilium/ebpf btf.Type: ``Kind`` or ``Kind:"name"``."""
        kind_name = GO_KIND_NAMES.get(self.kind, "Void")
        return f"{kind_name}:{go_quote(self.name)}" if self.name else kind_name


@dataclass(slots=True)
class Btf:
    """The decoded type graph plus string table access for ``.BTF.ext``."""

    little_endian: bool
    types: list[BtfType]
    strings: bytes
    strings_base: int
    _string_cache: dict[int, str] = field(default_factory=dict)

    def string_at(self, offset: int, part: str = "BTF string table") -> str:
        """Return the NUL-terminated string at ``offset`` of the string section."""
        cached = self._string_cache.get(offset)
        if cached is not None:
            return cached
        if offset < 0 or offset >= len(self.strings):
            if offset == 0:
                return ""
            raise AnalysisError(f"{part}: string offset {offset} outside the {len(self.strings)}-byte "
                                f"string table at byte offset {self.strings_base}")
        end = self.strings.find(b"\0", offset)
        if end < 0:
            raise AnalysisError(f"{part}: unterminated string at byte offset {self.strings_base + offset}")
        text = decode_name(self.strings[offset:end])
        self._string_cache[offset] = text
        return text

    def get(self, type_id: int, part: str = "BTF") -> BtfType:
        if 0 <= type_id < len(self.types):
            return self.types[type_id]
        raise AnalysisError(f"{part}: type id {type_id} does not exist (have {len(self.types) - 1}) "
                            f"at byte offset {self.strings_base}")

    def skip_qualifiers(self, type_id: int) -> BtfType:
        """Follow typedef/const/volatile/restrict/type_tag links to the underlying type."""
        current = self.get(type_id)
        for _ in range(_MAX_CHAIN):
            if current.kind not in QUALIFIER_KINDS:
                return current
            current = self.get(current.ref)
        raise AnalysisError(f"BTF: qualifier chain too deep from type {type_id} "
                            f"at byte offset {current.record_offset}")

    def size_of(self, type_id: int, depth: int = 0) -> int:
        """Byte size of a type as cilium's ``btf.Sizeof`` computes it (pointers are 8)."""
        resolved = self.skip_qualifiers(type_id)
        if depth > _MAX_CHAIN:
            raise AnalysisError(f"BTF: array nesting too deep at byte offset {resolved.record_offset}")
        if resolved.kind in _SIZED_KINDS:
            return resolved.size
        if resolved.kind == KIND_PTR:
            return 8
        if resolved.kind == KIND_ARRAY:
            return resolved.array_nelems * self.size_of(resolved.array_elem, depth + 1)
        raise AnalysisError(f"BTF: type {resolved.type_id} ({GO_KIND_NAMES[resolved.kind]}) has no size "
                            f"at byte offset {resolved.record_offset}")

    def find_datasec(self, name: str) -> BtfType | None:
        for btf_type in self.types:
            if btf_type.kind == KIND_DATASEC and btf_type.name == name:
                return btf_type
        return None


def go_quote(text: str) -> str:
    """Quote like Go's ``%q`` / strconv.Quote for the identifier-like names found in BTF."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in "\"\\":
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def parse_btf(data: bytes, base: int = 0) -> Btf:
    """Decode a whole ``.BTF`` section; ``base`` is its file offset for error messages."""
    part = "BTF header"
    probe = ByteReader(data, part, base=base)
    magic = probe.u16(0, "magic")
    if magic == BTF_MAGIC:
        little = True
    elif magic == 0x9FEB:
        little = False
    else:
        raise probe.error(0, f"bad magic 0x{magic:04x}")
    reader = ByteReader(data, part, little_endian=little, base=base)
    version = reader.u8(2, "version")
    if version != 1:
        raise reader.error(2, f"unsupported version {version}")
    header_len = reader.u32(4, "hdr_len")
    if header_len < 24 or header_len > len(data):
        raise reader.error(4, f"invalid hdr_len {header_len}")
    type_off, type_len, str_off, str_len = reader.u32_array(8, 4, "section offsets")
    types_start = header_len + type_off
    strings_start = header_len + str_off
    for start, length, what in ((types_start, type_len, "type section"), (strings_start, str_len, "string section")):
        if start + length > len(data):
            raise reader.error(8, f"{what} [{start}, {start + length}) runs past the {len(data)}-byte BTF")
    strings = data[strings_start:strings_start + str_len]
    if str_len and strings[0] != 0:
        raise reader.error(strings_start, "string table does not start with an empty string")
    btf = Btf(little_endian=little, types=[BtfType(0, KIND_VOID, "", False, 0)],
              strings=strings, strings_base=base + strings_start)
    type_reader = ByteReader(data[types_start:types_start + type_len], "BTF type section",
                             little_endian=little, base=base + types_start)
    _parse_types(type_reader, btf)
    _check_references(btf)
    return btf


def _parse_types(reader: ByteReader, btf: Btf) -> None:
    offset = 0
    total = len(reader)
    while offset < total:
        record_offset = offset
        name_off, info, size_or_type = reader.u32_array(offset, 3, "type record")
        offset += 12
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kind_flag = bool(info >> 31)
        type_id = len(btf.types)
        entry = BtfType(type_id, kind, btf.string_at(name_off, "BTF type name"), kind_flag, vlen,
                        record_offset=reader.base + record_offset)
        if kind in _SIZED_KINDS:
            entry.size = size_or_type
        elif kind in _REF_KINDS:
            entry.ref = size_or_type
        if kind not in _TRAILER_WORDS:
            raise reader.error(record_offset, f"type {type_id} has unknown kind {kind}")
        fixed_words, words_per_item = _TRAILER_WORDS[kind]
        word_count = fixed_words + words_per_item * vlen
        words = reader.u32_array(offset, word_count, f"{GO_KIND_NAMES[kind]} data") if word_count else ()
        offset += 4 * word_count
        _fill_kind_data(btf, entry, words)
        btf.types.append(entry)


# Per kind: (fixed u32 words, u32 words per vlen item) following the 12-byte common record.
_TRAILER_WORDS: dict[int, tuple[int, int]] = {
    KIND_INT: (1, 0), KIND_PTR: (0, 0), KIND_ARRAY: (3, 0), KIND_STRUCT: (0, 3), KIND_UNION: (0, 3),
    KIND_ENUM: (0, 2), KIND_FWD: (0, 0), KIND_TYPEDEF: (0, 0), KIND_VOLATILE: (0, 0), KIND_CONST: (0, 0),
    KIND_RESTRICT: (0, 0), KIND_FUNC: (0, 0), KIND_FUNC_PROTO: (0, 2), KIND_VAR: (1, 0), KIND_DATASEC: (0, 3),
    KIND_FLOAT: (0, 0), KIND_DECL_TAG: (1, 0), KIND_TYPE_TAG: (0, 0), KIND_ENUM64: (0, 3),
}


def _fill_kind_data(btf: Btf, entry: BtfType, words: tuple[int, ...]) -> None:
    """Decode the kind-specific trailer words into ``entry``."""
    kind, vlen = entry.kind, entry.vlen
    if kind == KIND_INT:
        entry.int_encoding, entry.int_bit_offset, entry.int_bits = (words[0] >> 24) & 0xF, (words[0] >> 16) & 0xFF, \
            words[0] & 0xFF
    elif kind == KIND_ARRAY:
        entry.array_elem, entry.array_index, entry.array_nelems = words
    elif kind in (KIND_STRUCT, KIND_UNION):
        members = []
        for i in range(vlen):
            member_name, member_type, raw_offset = words[3 * i:3 * i + 3]
            bitfield = raw_offset >> 24 if entry.kind_flag else 0
            bit_offset = raw_offset & 0xFFFFFF if entry.kind_flag else raw_offset
            members.append(BtfMember(btf.string_at(member_name, "BTF member name"), member_type, bit_offset, bitfield))
        entry.members = tuple(members)
    elif kind == KIND_ENUM:
        entry.enum_values = tuple(
            (btf.string_at(words[2 * i], "BTF enum name"), _signed(words[2 * i + 1], 32, entry.kind_flag))
            for i in range(vlen))
    elif kind == KIND_ENUM64:
        entry.enum_values = tuple(
            (btf.string_at(words[3 * i], "BTF enum64 name"),
             _signed(words[3 * i + 1] | (words[3 * i + 2] << 32), 64, entry.kind_flag))
            for i in range(vlen))
    elif kind == KIND_FUNC_PROTO:
        entry.params = tuple((btf.string_at(words[2 * i], "BTF param name"), words[2 * i + 1]) for i in range(vlen))
    elif kind == KIND_VAR:
        entry.linkage = words[0]
    elif kind == KIND_DATASEC:
        entry.secinfos = tuple(BtfSecinfo(*words[3 * i:3 * i + 3]) for i in range(vlen))
    elif kind == KIND_DECL_TAG:
        entry.component_idx = _signed(words[0], 32, True)
    elif kind == KIND_FUNC:
        entry.linkage = vlen


def _signed(value: int, bits: int, is_signed: bool) -> int:
    return value - (1 << bits) if is_signed and value >= 1 << (bits - 1) else value


def _referenced_ids(btf_type: BtfType) -> list[int]:
    ids: list[int] = []
    if btf_type.kind in _REF_KINDS:
        ids.append(btf_type.ref)
    if btf_type.kind == KIND_ARRAY:
        ids += [btf_type.array_elem, btf_type.array_index]
    ids += [member.type_id for member in btf_type.members]
    ids += [type_id for _, type_id in btf_type.params]
    ids += [info.type_id for info in btf_type.secinfos]
    return ids


def _check_references(btf: Btf) -> None:
    """Reject dangling type ids up front so later graph walks cannot index out of range."""
    limit = len(btf.types)
    for btf_type in btf.types[1:]:
        for type_id in _referenced_ids(btf_type):
            if type_id >= limit:
                raise AnalysisError(f"BTF type section: type {btf_type.type_id} refers to missing type "
                                    f"{type_id} at byte offset {btf_type.record_offset}")
