"""ELF access for BPF objects: sections, symbols and REL relocations, via pyelftools.

pyelftools does the structure decoding; this module validates the ranges it will touch
first, reads names as raw bytes (Go keeps invalid UTF-8 byte for byte), and turns any
decoding failure into one :class:`AnalysisError` naming the ELF part and byte offset.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_SH_TYPE_BASE, ENUM_ST_INFO_BIND, ENUM_ST_INFO_TYPE, ENUM_ST_VISIBILITY
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from gadgetstore.engine.analysis.binreader import ByteReader, decode_name
from gadgetstore.engine.errors import AnalysisError

SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_REL = 9
SHT_NOBITS = 8
SHF_EXECINSTR = 0x4
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN = 0, 1, 2
EM_NONE, EM_BPF = 0, 247
_ELF64_HEADER_SIZE = 64
_SECTION_HEADER_SIZE = 64
_SYMBOL_SIZE = 24
_REL_SIZE = 16

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ElfSection:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int
    header_offset: int


@dataclass(frozen=True, slots=True)
class ElfSymbol:
    """A symbol with pyelftools' enum strings turned back into the numbers the rules use."""

    index: int
    name: str
    value: int
    size: int
    type: int
    bind: int
    visibility: int
    shndx: int


@dataclass(frozen=True, slots=True)
class ElfRelocation:
    offset: int
    symbol_index: int


def _number(value: object, table: Mapping[str, int]) -> int:
    if isinstance(value, int):
        return value
    return table.get(str(value), -1)


class ElfObject:
    """A parsed relocatable BPF object; all byte ranges are checked against the file size."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._check_header()
        with _elf_errors("ELF header", 0):
            self._elf = ELFFile(io.BytesIO(data))
            self.little_endian: bool = bool(self._elf.little_endian)
            machine = _number(self._elf.header["e_machine"], {"EM_NONE": EM_NONE, "EM_BPF": EM_BPF})
            section_count = self._elf.num_sections()
        if machine not in (EM_NONE, EM_BPF):
            raise AnalysisError(f"ELF header: machine {self._elf.header['e_machine']} is not BPF at byte offset 18")
        self.sections = self._load_sections(section_count)
        self._symbols: list[ElfSymbol] | None = None

    def _check_header(self) -> None:
        header = ByteReader(self.data, "ELF header")
        header.need(0, _ELF64_HEADER_SIZE, "ELF64 header")
        if self.data[:4] != b"\x7fELF":
            raise header.error(0, "bad magic")
        if self.data[4] != 2:
            raise header.error(4, f"class {self.data[4]} is not ELFCLASS64")
        if self.data[5] not in (1, 2):
            raise header.error(5, f"unknown data encoding {self.data[5]}")
        header = ByteReader(self.data, "ELF header", little_endian=self.data[5] == 1)
        shoff = header.u64(0x28, "e_shoff")
        shentsize = header.u16(0x3A, "e_shentsize")
        shnum = header.u16(0x3C, "e_shnum")
        shstrndx = header.u16(0x3E, "e_shstrndx")
        if shnum == 0 or shentsize != _SECTION_HEADER_SIZE:
            raise header.error(0x3A, f"unsupported section header table (entsize {shentsize}, count {shnum})")
        if shoff + shnum * shentsize > len(self.data):
            raise header.error(0x28, f"section header table at {shoff} runs past the end of the file")
        if shstrndx >= shnum:
            raise header.error(0x3E, f"section name table index {shstrndx} out of range")

    def _load_sections(self, count: int) -> list[ElfSection]:
        shoff = int(self._elf.header["e_shoff"])
        raw: list[ElfSection] = []
        for index in range(count):
            header_offset = shoff + index * _SECTION_HEADER_SIZE
            with _elf_errors(f"ELF section header {index}", header_offset):
                header = self._elf.get_section(index).header
                section = ElfSection(index, "", _number(header["sh_type"], ENUM_SH_TYPE_BASE),
                                     int(header["sh_flags"]), int(header["sh_offset"]), int(header["sh_size"]),
                                     int(header["sh_link"]), int(header["sh_info"]), int(header["sh_entsize"]),
                                     header_offset)
            if section.type not in (SHT_NOBITS, SHT_NULL) and section.offset + section.size > len(self.data):
                raise AnalysisError(f"ELF section header {index}: contents [{section.offset}, "
                                    f"{section.offset + section.size}) run past the end of the file "
                                    f"at byte offset {header_offset}")
            raw.append(section)
        names_section = raw[int(self._elf.header["e_shstrndx"])]
        names = self.section_data(names_section)
        return [ElfSection(s.index, self._name_at(names, names_section, s.header_offset, self._sh_name(s)),
                           s.type, s.flags, s.offset, s.size, s.link, s.info, s.entsize, s.header_offset)
                for s in raw]

    def _sh_name(self, section: ElfSection) -> int:
        reader = ByteReader(self.data, "ELF section header", little_endian=self.little_endian)
        return reader.u32(section.header_offset, "sh_name")

    @staticmethod
    def _name_at(table: bytes, table_section: ElfSection, where: int, offset: int) -> str:
        if offset >= len(table):
            if offset == 0:
                return ""
            raise AnalysisError(f"ELF string table {table_section.index}: name offset {offset} out of range "
                                f"at byte offset {where}")
        end = table.find(b"\0", offset)
        if end < 0:
            raise AnalysisError(f"ELF string table {table_section.index}: unterminated name "
                                f"at byte offset {table_section.offset + offset}")
        return decode_name(table[offset:end])

    def section_data(self, section: ElfSection) -> bytes:
        if section.type in (SHT_NOBITS, SHT_NULL):
            return b""
        return self.data[section.offset:section.offset + section.size]

    def section_named(self, name: str) -> ElfSection | None:
        for section in self.sections:
            if section.name == name:
                return section
        return None

    @property
    def symbols(self) -> list[ElfSymbol]:
        """Symbols of the (single) SHT_SYMTAB, indexed by raw symtab index (0 = null)."""
        if self._symbols is None:
            self._symbols = self._load_symbols()
        return self._symbols

    def _load_symbols(self) -> list[ElfSymbol]:
        symtab = next((s for s in self.sections if s.type == SHT_SYMTAB), None)
        if symtab is None:
            raise AnalysisError("ELF: no symbol table (.symtab) at byte offset 0")
        if symtab.entsize != _SYMBOL_SIZE or symtab.link >= len(self.sections):
            raise AnalysisError(f"ELF section {symtab.name!r}: bad symbol table entsize/link "
                                f"at byte offset {symtab.header_offset}")
        strtab = self.sections[symtab.link]
        names = self.section_data(strtab)
        pyelf_section = self._pyelf_section(symtab, SymbolTableSection)
        symbols = []
        for index, symbol in enumerate(_guarded(f"ELF symbol table {symtab.name!r}", symtab.offset,
                                                pyelf_section.iter_symbols)):
            entry = symbol.entry
            where = symtab.offset + index * _SYMBOL_SIZE
            with _elf_errors(f"ELF symbol {index}", where):
                symbols.append(ElfSymbol(
                    index, self._name_at(names, strtab, where, int(entry["st_name"])), int(entry["st_value"]),
                    int(entry["st_size"]), _number(entry["st_info"]["type"], ENUM_ST_INFO_TYPE),
                    _number(entry["st_info"]["bind"], ENUM_ST_INFO_BIND),
                    _number(entry["st_other"]["visibility"], ENUM_ST_VISIBILITY), _shndx(entry["st_shndx"])))
        return symbols

    def relocations(self, rel_section: ElfSection) -> list[ElfRelocation]:
        """REL entries of one section; RELA is ignored exactly like cilium/ebpf does."""
        if rel_section.entsize < _REL_SIZE:
            raise AnalysisError(f"ELF section {rel_section.name!r}: REL entry size {rel_section.entsize} "
                                f"below {_REL_SIZE} at byte offset {rel_section.header_offset}")
        if rel_section.entsize != _REL_SIZE:
            raise AnalysisError(f"ELF section {rel_section.name!r}: unsupported REL entry size "
                                f"{rel_section.entsize} at byte offset {rel_section.header_offset}")
        pyelf_section = self._pyelf_section(rel_section, RelocationSection)
        result = []
        for relocation in _guarded(f"ELF relocations {rel_section.name!r}", rel_section.offset,
                                   pyelf_section.iter_relocations):
            result.append(ElfRelocation(int(relocation.entry["r_offset"]), int(relocation.entry["r_info_sym"])))
        return result

    def _pyelf_section(self, section: ElfSection, expected: type[T]) -> T:
        with _elf_errors(f"ELF section {section.name!r}", section.header_offset):
            pyelf_section = self._elf.get_section(section.index)
        if not isinstance(pyelf_section, expected):
            raise AnalysisError(f"ELF section {section.name!r}: not a {expected.__name__} "
                                f"at byte offset {section.header_offset}")
        return pyelf_section


def _shndx(value: object) -> int:
    """Special section indices arrive as strings (``SHN_ABS``); map them above any real index."""
    if isinstance(value, int):
        return value
    return {"SHN_UNDEF": SHN_UNDEF, "SHN_ABS": 0xFFF1, "SHN_COMMON": 0xFFF2}.get(str(value), SHN_LORESERVE)


@contextmanager
def _elf_errors(part: str, offset: int) -> Iterator[None]:
    """pyelftools raises a zoo of exception types on corrupt input; report them uniformly."""
    try:
        yield
    except AnalysisError:
        raise
    except Exception as error:  # third-party decoder: any failure means malformed input
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AnalysisError(f"{part}: cannot decode ({detail}) at byte offset {offset}") from None


def _guarded(part: str, offset: int, produce: Callable[[], Iterator[T]]) -> list[T]:
    with _elf_errors(part, offset):
        return list(produce())
