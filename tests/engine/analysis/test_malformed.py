"""Truncated and bit-flipped ELF/BTF/BTF.ext/wasm input must only ever raise AnalysisError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gadgetstore.engine.analysis.btf import parse_btf
from gadgetstore.engine.analysis.btfext import parse_btf_ext
from gadgetstore.engine.analysis.elffile import ElfObject
from gadgetstore.engine.analysis.extrainfo import analyze_ebpf, analyze_wasm
from gadgetstore.engine.errors import AnalysisError

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
HERE = Path(__file__).resolve().parent


def _wasm_sample() -> bytes:
    """A small valid module (ig imports + constant gadgetAPIVersion) to mutate."""
    def name(text: str) -> bytes:
        return bytes([len(text)]) + text.encode()

    def section(section_id: int, payload: bytes) -> bytes:
        return bytes([section_id, len(payload)]) + payload

    types = b"\x02" + b"\x60\x00\x01\x7e" + b"\x60\x01\x7f\x01\x7f"
    imports = (b"\x02" + name("ig") + name("newDataSource") + b"\x00\x01"
               + name("env") + name("memory") + b"\x02\x00\x01")
    code = b"\x01" + b"\x04\x00\x42\x01\x0b"
    return (b"\0asm\x01\0\0\0" + section(1, types) + section(2, imports) + section(3, b"\x01\x00")
            + section(7, b"\x01" + name("gadgetAPIVersion") + b"\x00\x01") + section(10, code))


WASM = _wasm_sample()


def _expect_analysis_error_only(action: object) -> None:
    assert callable(action)
    try:
        action()
    except AnalysisError as error:
        message = str(error)
        assert "byte offset" in message and "\n" not in message, message


def _flip(data: bytes, positions: list[int], bits: list[int]) -> bytes:
    mutated = bytearray(data)
    for position, bit in zip(positions, bits, strict=False):
        mutated[position % len(mutated)] ^= 1 << bit
    return bytes(mutated)


def _section_range(data: bytes, name: str) -> tuple[int, int]:
    section = ElfObject(data).section_named(name)
    assert section is not None
    return section.offset, section.size


@pytest.fixture(scope="module")
def small_elf(gadget_objects: dict[str, Path]) -> bytes:
    return gadget_objects["lsm_subprog"].read_bytes()


def test_valid_inputs_analyze_cleanly(small_elf: bytes, demo_elves: dict[str, bytes]) -> None:
    """The fuzz baselines themselves must decode, or the fuzzing would only test the first check."""
    assert "ebpf.programs" in analyze_ebpf(small_elf)
    assert "ebpf.programs" in analyze_ebpf(demo_elves["amd64"])
    assert analyze_wasm(WASM)["wasm.gadgetAPIVersion"] == ("text/plain", b"1")


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10**9))
def test_truncated_elf_raises_analysis_error(small_elf: bytes, cut: int) -> None:
    with pytest.raises(AnalysisError):
        analyze_ebpf(small_elf[:cut % len(small_elf)])


@FUZZ
@given(positions=st.lists(st.integers(0, 10**9), min_size=1, max_size=6),
       bits=st.lists(st.integers(0, 7), min_size=6, max_size=6))
def test_bit_flipped_elf_anywhere(small_elf: bytes, positions: list[int], bits: list[int]) -> None:
    _expect_analysis_error_only(lambda: analyze_ebpf(_flip(small_elf, positions, bits)))


@FUZZ
@given(section=st.sampled_from([".BTF", ".BTF.ext", "lsm/file_open", ".text", ".symtab", ".rellsm/file_open",
                                ".rel.text", ".strtab", ".maps"]),
       positions=st.lists(st.integers(0, 10**9), min_size=1, max_size=4),
       bits=st.lists(st.integers(0, 7), min_size=4, max_size=4))
def test_bit_flipped_elf_sections(small_elf: bytes, section: str, positions: list[int], bits: list[int]) -> None:
    start, size = _section_range(small_elf, section)
    mutated = bytearray(small_elf)
    for position, bit in zip(positions, bits, strict=False):
        mutated[start + position % size] ^= 1 << bit
    _expect_analysis_error_only(lambda: analyze_ebpf(bytes(mutated)))


def _flip_in_section(data: bytes, section: str, positions: list[int], bits: list[int]) -> bytes:
    start, size = _section_range(data, section)
    mutated = bytearray(data)
    for position, bit in zip(positions, bits, strict=False):
        mutated[start + position % size] ^= 1 << bit
    return bytes(mutated)


REAL_FLIPS = {"positions": st.lists(st.integers(0, 10**9), min_size=1, max_size=3),
              "bits": st.lists(st.integers(0, 7), min_size=3, max_size=3)}


@settings(FUZZ, max_examples=40)
@given(section=st.sampled_from([".BTF", ".BTF.ext", "tracepoint/syscalls/sys_enter_openat", ".symtab",
                                ".reltracepoint/syscalls/sys_enter_openat", "tracepoint/raw_syscalls/sys_enter",
                                ".maps"]), **REAL_FLIPS)
def test_bit_flipped_trace_demo(demo_elves: dict[str, bytes], section: str, positions: list[int],
                                bits: list[int]) -> None:
    mutated = _flip_in_section(demo_elves["amd64"], section, positions, bits)
    _expect_analysis_error_only(lambda: analyze_ebpf(mutated))


@settings(FUZZ, max_examples=40)
@given(section=st.sampled_from([".BTF", ".BTF.ext", "tracepoint/syscalls/sys_exit_open", ".symtab",
                                ".reltracepoint/syscalls/sys_exit_open"]), **REAL_FLIPS)
def test_bit_flipped_trace_open(trace_open_elves: dict[str, bytes], section: str, positions: list[int],
                                bits: list[int]) -> None:
    mutated = _flip_in_section(trace_open_elves["amd64"], section, positions, bits)
    _expect_analysis_error_only(lambda: analyze_ebpf(mutated))


@FUZZ
@given(cut=st.integers(0, 10**9), positions=st.lists(st.integers(0, 10**9), max_size=4),
       bits=st.lists(st.integers(0, 7), min_size=4, max_size=4))
def test_mutated_btf_and_btf_ext(small_elf: bytes, cut: int, positions: list[int], bits: list[int]) -> None:
    btf_start, btf_size = _section_range(small_elf, ".BTF")
    ext_start, ext_size = _section_range(small_elf, ".BTF.ext")
    btf_blob = small_elf[btf_start:btf_start + btf_size]
    ext_blob = small_elf[ext_start:ext_start + ext_size]
    mutated_btf = _flip(btf_blob, positions, bits)[:len(btf_blob) - cut % 64]
    _expect_analysis_error_only(lambda: parse_btf(mutated_btf))
    btf = parse_btf(btf_blob)
    mutated_ext = _flip(ext_blob, positions, bits)[:len(ext_blob) - cut % 64]
    _expect_analysis_error_only(lambda: parse_btf_ext(mutated_ext, btf))


@FUZZ
@given(cut=st.integers(0, 10**9))
def test_truncated_wasm_raises_analysis_error(cut: int) -> None:
    with pytest.raises(AnalysisError):
        analyze_wasm(WASM[:cut % len(WASM)])


@FUZZ
@given(positions=st.lists(st.integers(0, 10**9), min_size=1, max_size=4),
       bits=st.lists(st.integers(0, 7), min_size=4, max_size=4), tail=st.binary(max_size=8))
def test_bit_flipped_wasm(positions: list[int], bits: list[int], tail: bytes) -> None:
    _expect_analysis_error_only(lambda: analyze_wasm(_flip(WASM, positions, bits) + tail))


def _patched(data: bytes, offset: int, replacement: bytes) -> bytes:
    return data[:offset] + replacement + data[offset + len(replacement):]


def test_specific_elf_corruptions_name_the_part_and_offset(small_elf: bytes) -> None:
    elf = ElfObject(small_elf)
    program = elf.section_named("lsm/file_open")
    relocations = elf.section_named(".rellsm/file_open")
    assert program is not None and relocations is not None
    cases = {
        "ELF header: bad magic at byte offset 0": _patched(small_elf, 0, b"\x7fELG"),
        "ELF header: machine EM_X86_64 is not BPF at byte offset 18": _patched(small_elf, 18, b"\x3e\x00"),
        "ELF header: section header table at ": _patched(small_elf, 0x28, (len(small_elf)).to_bytes(8, "little")),
        # r_info's symbol index (upper 32 bits) pointed past the symbol table.
        f"ELF relocations '.rellsm/file_open': symbol index 65535 does not exist at byte offset {relocations.offset}":
            _patched(small_elf, relocations.offset + 12, b"\xff\xff\x00\x00"),
        # An LdImmDW whose second half has a non-zero opcode byte (the first LdImmDW is instruction 7).
        f"non-zero opcode bytes at byte offset {program.offset + 8 * 8}":
            _patched(small_elf, program.offset + 8 * 8, b"\x07"),
    }
    for expected, corrupted in cases.items():
        with pytest.raises(AnalysisError) as caught:
            analyze_ebpf(corrupted)
        assert expected in str(caught.value)
