"""The spec objects shared by the ELF loader, the listing and the graph builders.

They mirror the fields of cilium/ebpf's ``MapSpec``, ``VariableSpec`` and ``ProgramSpec``
that ``ig image inspect`` prints, and nothing more.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from gadgetstore.engine.analysis.btf import Btf
from gadgetstore.engine.analysis.elffile import ElfObject, ElfSymbol
from gadgetstore.engine.analysis.insn import Instruction

MAP_TYPE_NAMES = (
    "UnspecifiedMap", "Hash", "Array", "ProgramArray", "PerfEventArray", "PerCPUHash", "PerCPUArray",
    "StackTrace", "CGroupArray", "LRUHash", "LRUCPUHash", "LPMTrie", "ArrayOfMaps", "HashOfMaps", "DevMap",
    "SockMap", "CPUMap", "XSKMap", "SockHash", "CGroupStorage", "ReusePortSockArray", "PerCPUCGroupStorage",
    "Queue", "Stack", "SkStorage", "DevMapHash", "StructOpsMap", "RingBuf", "InodeStorage", "TaskStorage",
    "BloomFilter", "UserRingbuf", "CgroupStorage", "Arena",
)
MAP_TYPE_ARRAY = 2
MAP_TYPE_STRUCT_OPS = 26
_UNSANITARY = re.compile(r"[^A-Za-z0-9._]")


def map_type_name(map_type: int) -> str:
    """``MapType.String()`` of cilium/ebpf (stringer output)."""
    if 0 <= map_type < len(MAP_TYPE_NAMES):
        return MAP_TYPE_NAMES[map_type]
    return f"MapType({map_type})"


class SectionKind(enum.Enum):
    """What cilium's loader does with a section; the first matching rule wins."""

    OTHER = "other"
    LICENSE = "license"
    VERSION = "version"
    LEGACY_MAPS = "maps"
    BTF_MAPS = "btf maps"
    DATA = "data"
    RELOCATIONS = "relocations"
    PROGRAM = "program"
    STRUCT_OPS = "struct_ops"


@dataclass(frozen=True, slots=True)
class MapSpec:
    key: str
    type: int

    @property
    def name(self) -> str:
        """``MapSpec.Name``: the key with everything but ``[A-Za-z0-9._]`` removed."""
        return _UNSANITARY.sub("", self.key)


@dataclass(frozen=True, slots=True)
class VariableSpec:
    name: str
    offset: int
    size: int
    section: str


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    name: str
    section: str
    instructions: list[Instruction]


@dataclass(slots=True)
class CollectionSpec:
    section_names: list[str]
    maps: dict[str, MapSpec]
    variables: list[VariableSpec]
    programs: dict[str, ProgramSpec]
    btf: Btf


@dataclass(slots=True)
class ElfLayout:
    """Sections of interest as cilium's ``elfCode`` sees them.

    ``symbols`` maps a section index to ``offset -> symbol`` (one symbol per offset, the last
    one in symbol-table order wins, exactly like cilium's map); ``relocations`` maps the index
    of a patched section to ``offset -> target symbol``.
    """

    elf: ElfObject
    kinds: dict[int, SectionKind]
    symbols: dict[int, dict[int, ElfSymbol]]
    relocations: dict[int, dict[int, ElfSymbol]]
    references: dict[int, int]
