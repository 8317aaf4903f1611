"""BTF and BTF.ext decoding: a hand-built blob with all 19 kinds, checked against bpftool."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from gadgetstore.engine.analysis import btf as kinds
from gadgetstore.engine.analysis.btf import parse_btf
from gadgetstore.engine.analysis.btfext import parse_btf_ext
from gadgetstore.engine.analysis.collection import load_collection
from gadgetstore.engine.analysis.elffile import ElfObject
from gadgetstore.engine.errors import AnalysisError


class BtfBuilder:
    """Encodes BTF records per uapi linux/btf.h so tests can craft any kind, including rare ones."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.records = bytearray()
        self.count = 0

    def name(self, text: str) -> int:
        if not text:
            return 0
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def add(self, kind: int, name: str, vlen: int, size_or_type: int, *extra: int, kind_flag: int = 0) -> int:
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.records += struct.pack("<3I", self.name(name), info, size_or_type)
        self.records += struct.pack(f"<{len(extra)}I", *extra)
        self.count += 1
        return self.count

    def build(self) -> bytes:
        header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.records), len(self.records), len(self.strings))
        return header + bytes(self.records) + bytes(self.strings)


def all_kinds_btf() -> bytes:
    b = BtfBuilder()
    int_id = b.add(kinds.KIND_INT, "int", 0, 4, (1 << 24) | 32)                      # 1
    ptr_id = b.add(kinds.KIND_PTR, "", 0, int_id)                                    # 2
    b.add(kinds.KIND_ARRAY, "", 0, 0, int_id, int_id, 7)                             # 3
    b.add(kinds.KIND_STRUCT, "pair", 2, 8, b.name("a"), int_id, 0, b.name("b"), int_id, 32)  # 4
    b.add(kinds.KIND_UNION, "either", 2, 4, b.name("x"), int_id, 0, b.name("y"), int_id, (3 << 24) | 0,
          kind_flag=1)                                                               # 5
    b.add(kinds.KIND_ENUM, "color", 2, 4, b.name("RED"), 0, b.name("BLUE"), 0xFFFFFFFF, kind_flag=1)  # 6
    b.add(kinds.KIND_FWD, "later", 0, 0, kind_flag=1)                                # 7
    b.add(kinds.KIND_TYPEDEF, "my_int", 0, int_id)                                   # 8
    b.add(kinds.KIND_VOLATILE, "", 0, int_id)                                        # 9
    b.add(kinds.KIND_CONST, "", 0, 9)                                                # 10
    b.add(kinds.KIND_RESTRICT, "", 0, ptr_id)                                        # 11
    proto_id = b.add(kinds.KIND_FUNC_PROTO, "", 1, int_id, b.name("arg"), int_id)    # 12
    b.add(kinds.KIND_FUNC, "handler", 1, proto_id)                                   # 13
    var_id = b.add(kinds.KIND_VAR, "counter", 0, int_id, 1)                          # 14
    b.add(kinds.KIND_DATASEC, ".data", 1, 4, var_id, 0, 4)                           # 15
    b.add(kinds.KIND_FLOAT, "double", 0, 8)                                          # 16
    b.add(kinds.KIND_DECL_TAG, "tagged", 0, 4, 0xFFFFFFFF)                           # 17
    b.add(kinds.KIND_TYPE_TAG, "user", 0, ptr_id)                                    # 18
    b.add(kinds.KIND_ENUM64, "big", 1, 8, b.name("HUGE"), 0x89ABCDEF, 0x1234567)     # 19
    return b.build()


def test_all_19_kinds_decode_like_bpftool(write_blob: Callable[[str, bytes], Path],
                                          bpftool_types: Callable[[Path], list[dict[str, object]]]) -> None:
    blob = all_kinds_btf()
    btf = parse_btf(blob)
    expected = bpftool_types(write_blob("all_kinds.btf", blob))
    assert sorted(t.kind for t in btf.types[1:]) == list(range(1, 20))
    assert len(expected) == 19
    by_id = {entry["id"]: entry for entry in expected}
    assert btf.types[1].int_bits == by_id[1]["nr_bits"] == 32 and by_id[1]["encoding"] == "SIGNED"
    assert btf.types[1].int_encoding == 1
    assert btf.types[3].array_nelems == by_id[3]["nr_elems"] == 7
    union_members = by_id[5]["members"]
    assert isinstance(union_members, list)
    assert btf.types[5].members[1].bitfield_size == union_members[1]["bitfield_size"] == 3
    enum_values = by_id[6]["values"]
    assert isinstance(enum_values, list)
    assert [value for _, value in btf.types[6].enum_values] == [v["val"] for v in enum_values] == [0, -1]
    assert btf.types[7].kind_flag and by_id[7]["fwd_kind"] == "union"
    assert btf.types[13].linkage == 1 and by_id[13]["linkage"] == "global"
    assert btf.types[14].linkage == 1 and by_id[14]["linkage"] == "global"
    assert btf.types[17].component_idx == by_id[17]["component_idx"] == -1
    enum64_values = by_id[19]["values"]
    assert isinstance(enum64_values, list)
    assert btf.types[19].enum_values[0][1] == enum64_values[0]["val"] == 0x123456789ABCDEF
    assert [(t.name or "(anon)") for t in btf.types[1:]] == [entry["name"] for entry in expected]
    assert btf.size_of(8) == 4 and btf.size_of(3) == 28 and btf.size_of(11) == 8
    assert btf.types[4].go_string() == 'Struct:"pair"' and btf.types[2].go_string() == "Pointer"


def test_big_endian_btf_is_detected() -> None:
    little = all_kinds_btf()
    # Re-encode every u32 of the header and records big-endian; strings are bytes and stay as is.
    header_len = 24
    type_len = struct.unpack_from("<I", little, 12)[0]
    words = struct.unpack_from(f"<{type_len // 4}I", little, header_len)
    big = (struct.pack(">HBBIIIII", 0xEB9F, 1, 0, 24, 0, type_len, type_len, len(little) - header_len - type_len)
           + struct.pack(f">{len(words)}I", *words) + little[header_len + type_len:])
    assert [(t.kind, t.name, t.size, t.ref) for t in parse_btf(big).types] == \
        [(t.kind, t.name, t.size, t.ref) for t in parse_btf(little).types]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda blob: blob[:10], "BTF header"),
    (lambda blob: b"\x00\x00" + blob[2:], "bad magic"),
    (lambda blob: blob[:24] + blob[24:36].replace(b"\x00\x00\x00\x01", b"\x00\x00\x00\x1f", 1) + blob[36:],
     "unknown kind"),
    (lambda blob: blob[:48] + b"\xff\x00\x00\x00" + blob[52:], "refers to missing type"),
])
def test_malformed_btf_reports_part_and_offset(mutate: Callable[[bytes], bytes], message: str) -> None:
    with pytest.raises(AnalysisError, match=message) as caught:
        parse_btf(mutate(all_kinds_btf()))
    assert "byte offset" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_btf_ext_line_info_and_core_relocations(gadget_objects: dict[str, Path],
                                                bpftool_types: Callable[[Path], list[dict[str, object]]]) -> None:
    elf = ElfObject(gadget_objects["core_read"].read_bytes())
    btf_section, ext_section = elf.section_named(".BTF"), elf.section_named(".BTF.ext")
    assert btf_section is not None and ext_section is not None
    btf = parse_btf(elf.section_data(btf_section))
    ext = parse_btf_ext(elf.section_data(ext_section), btf)
    section = "kprobe/wake_up_new_task"
    assert [info.insn for info in ext.func_infos[section]] == [0]
    assert btf.get(ext.func_infos[section][0].type_id).name == "on_new_task"
    lines = ext.line_infos[section]
    assert lines == sorted(lines, key=lambda line: line.insn)
    assert any("bpf_probe_read_kernel(&tgid" in line.line for line in lines)
    assert all(line.file_name.endswith("core_read.bpf.c") for line in lines)
    (relocation,) = ext.core_relocations[section]
    fake_task_id = next(t["id"] for t in bpftool_types(gadget_objects["core_read"])
                        if t["kind"] == "STRUCT" and t["name"] == "fake_task")
    assert (relocation.type_id, relocation.accessor, relocation.kind) == (fake_task_id, (0, 1), 0)
    assert relocation.go_string(btf) == f'CORERelocation(byte_off, Struct:"fake_task"[0:1], local_id={fake_task_id})'


def test_elf_without_btf_is_rejected(gadget_objects: dict[str, Path]) -> None:
    data = bytearray(gadget_objects["perf_lru"].read_bytes())
    elf = ElfObject(bytes(data))
    section = elf.section_named(".BTF")
    assert section is not None
    names = elf.sections[int.from_bytes(data[0x3E:0x40], "little")]
    name_offset = data.index(b".BTF\0", names.offset)
    data[name_offset:name_offset + 4] = b".XYZ"
    with pytest.raises(AnalysisError, match=r"no \.BTF section"):
        load_collection(bytes(data))
