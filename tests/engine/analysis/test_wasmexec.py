"""The bounded wasm evaluator behind ``wasm.gadgetAPIVersion``, on modules assembled here byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gadgetstore.engine.analysis.extrainfo import analyze_wasm
from gadgetstore.engine.analysis.wasm import parse_wasm
from gadgetstore.engine.analysis.wasmexec import MAX_CALL_DEPTH, MAX_TOUCHED_PAGES, STEP_BUDGET, gadget_api_version
from gadgetstore.engine.errors import AnalysisError
from tests.support.wasmbytes import (
    BLOCK,
    DROP,
    ELSE,
    EMPTY_BLOCK,
    END,
    I32,
    I32_ADD,
    I32_EQZ,
    I32_LOAD,
    I32_LOAD8_S,
    I32_LT_U,
    I32_STORE,
    I32_SUB,
    I32_WRAP_I64,
    I64,
    I64_ADD,
    I64_EXTEND_I32_U,
    I64_LOAD,
    I64_STORE,
    IF,
    LOOP,
    RETURN,
    SELECT,
    UNREACHABLE,
    Function,
    ModuleBuilder,
    active_data,
    br,
    br_if,
    br_table,
    call,
    func_export,
    func_import,
    func_type,
    global_get,
    global_set,
    i32_const,
    i64_const,
    leb,
    local_get,
    local_set,
    local_tee,
    memory_op,
    mutable_global,
    name,
    sleb,
)

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# Types shared by the modules below.
RETURNS_I64, RETURNS_I32, NO_RESULT, I32_TO_I32, I32_TO_NOTHING, FD_WRITE = range(6)
TYPES = [func_type([], [I64]), func_type([], [I32]), func_type([], []), func_type([I32], [I32]),
         func_type([I32], []), func_type([I32, I32, I32, I32], [I32])]
I64_RESULT, I32_RESULT = bytes([I64]), bytes([I32])


def version_of(body: bytes, *, helpers: list[Function] | None = None, memory_pages: int | None = 1,
               data: list[bytes] | None = None, globals_: list[bytes] | None = None,
               imports: list[bytes] | None = None, function_imports: int = 0, result_type: int = RETURNS_I64,
               locals_: list[tuple[int, int]] | None = None) -> int | None:
    """Run ``body`` as the exported ``gadgetAPIVersion``; ``helpers`` follow it as the next functions."""
    exported = function_imports
    module = ModuleBuilder(types=TYPES, imports=imports or [], memory_pages=memory_pages,
                           functions=[Function(result_type, body, locals_ or []), *(helpers or [])],
                           globals=globals_ or [], exports=[func_export("gadgetAPIVersion", exported)],
                           data=data or [])
    return gadget_api_version(parse_wasm(module.build()))


def op(code: int) -> bytes:
    return bytes([code])


# ----------------------------------------------------------------------------------------------------
# A Go c-shared module in miniature: the shape `go build -buildmode=c-shared` gives a
# `//go:wasmexport gadgetAPIVersion` returning uint64 (as in ig's trace_exec).

RETURN_ADDRESS = 0x17060001  # the wrapper's own PC, pushed as the Go call's return address
FD_WRITE_IMPORT, GADGET_LOG_IMPORT, NOT_INITIALIZED, GO_FUNCTION, UNWIND_LOOP, INITIALIZE, WRAPPER = range(7)

# runtime.notInitialized: prints through WASI fd_write, then aborts.
NOT_INITIALIZED_BODY = i32_const(2) + i32_const(0) + i32_const(0) + i32_const(0) + call(FD_WRITE_IMPORT) + DROP \
    + UNREACHABLE + END
# The Go function: resumable dispatch on PC_B, result stored above its return address, pops it.
GO_FUNCTION_BODY = (
    global_get(0) + local_set(1)
    + BLOCK + EMPTY_BLOCK + BLOCK + EMPTY_BLOCK + local_get(0) + br_table([0], 0) + END
    + local_get(1) + I64_EXTEND_I32_U + i64_const(8) + I64_ADD + I32_WRAP_I64 + i64_const(1) + memory_op(I64_STORE)
    + local_get(1) + i32_const(8) + I32_ADD + local_tee(1) + global_set(0) + i32_const(0) + RETURN
    + END + UNREACHABLE + END)
# _rt0_wasm_wasip1_lib stand-in: starting the Go runtime calls WASI.
INITIALIZE_BODY = i32_const(1) + i32_const(0) + i32_const(0) + i32_const(0) + call(FD_WRITE_IMPORT) + DROP + END


def wrapper_body(result: bytes = global_get(0) + memory_op(I64_LOAD)) -> bytes:
    return (
        global_get(0) + I32_EQZ + IF + EMPTY_BLOCK + call(NOT_INITIALIZED) + END
        + global_get(0) + i32_const(8) + I32_SUB + global_set(0)            # frame
        + global_get(0) + i32_const(8) + I32_SUB + global_set(0)            # return address slot
        + global_get(0) + i64_const(RETURN_ADDRESS) + memory_op(I64_STORE)
        + i32_const(0) + call(GO_FUNCTION)
        + IF + EMPTY_BLOCK + i64_const(RETURN_ADDRESS) + i64_const(16) + op(0x88) + I32_WRAP_I64
        + call(UNWIND_LOOP) + END
        + result
        + global_get(0) + i32_const(8) + I32_ADD + global_set(0) + RETURN + UNREACHABLE + END)


def go_module(*, with_initialize: bool = True, result: bytes | None = None, memory_pages: int = 40) -> bytes:
    exports = [func_export("gadgetAPIVersion", WRAPPER), func_export("_initialize", INITIALIZE)]
    return ModuleBuilder(
        types=TYPES,
        imports=[func_import("wasi_snapshot_preview1", "fd_write", FD_WRITE),
                 func_import("ig", "gadgetLog", I32_TO_NOTHING)],
        functions=[Function(NO_RESULT, NOT_INITIALIZED_BODY), Function(I32_TO_I32, GO_FUNCTION_BODY, [(1, I32)]),
                   Function(I32_TO_NOTHING, UNREACHABLE + END), Function(NO_RESULT, INITIALIZE_BODY),
                   Function(RETURNS_I64, wrapper_body() if result is None else wrapper_body(result))],
        memory_pages=memory_pages,
        globals=[mutable_global(I32, i32_const(0)), mutable_global(I64, i64_const(0))],  # SP, CTXT
        exports=exports if with_initialize else exports[:1],
        data=[active_data(4096, b"go rodata\0" * 50)],
    ).build()


def test_go_wasmexport_wrapper_gives_the_version() -> None:
    """The wrapper's body is not a constant expression: the version comes from running it, as ig does."""
    assert analyze_wasm(go_module()) == {
        "wasm.upcalls": ("application/json", b'["gadgetLog"]'),
        "wasm.gadgetAPIVersion": ("text/plain", b"1"),
    }


def test_go_wrapper_without_initialize_aborts_as_in_ig() -> None:
    """Without _initialize the stack pointer stays 0, the wrapper takes runtime.notInitialized, which
    calls fd_write: ig's call fails, and we leave the key out instead of guessing."""
    assert "wasm.gadgetAPIVersion" not in analyze_wasm(go_module(with_initialize=False))


def test_result_that_depends_on_the_scratch_stack_is_not_trusted() -> None:
    stack_address = global_get(0) + I64_EXTEND_I32_U
    assert "wasm.gadgetAPIVersion" not in analyze_wasm(go_module(result=stack_address))


def test_go_wrapper_needs_room_for_two_scratch_stacks() -> None:
    assert "wasm.gadgetAPIVersion" not in analyze_wasm(go_module(memory_pages=1))


# ----------------------------------------------------------------------------------------------------
# Integer semantics, checked against values worked out by hand.

I32_CASES = [
    pytest.param(i32_const(-7) + i32_const(2) + op(0x6D), 0xFFFFFFFD, id="div_s truncates toward zero"),
    pytest.param(i32_const(-7) + i32_const(2) + op(0x6F), 0xFFFFFFFF, id="rem_s has the dividend's sign"),
    pytest.param(i32_const(-7) + i32_const(2) + op(0x6E), 0x7FFFFFFC, id="div_u"),
    pytest.param(i32_const(-7) + i32_const(2) + op(0x70), 1, id="rem_u"),
    pytest.param(i32_const(-16) + i32_const(2) + op(0x75), 0xFFFFFFFC, id="shr_s"),
    pytest.param(i32_const(-16) + i32_const(2) + op(0x76), 0x3FFFFFFC, id="shr_u"),
    pytest.param(i32_const(1) + i32_const(33) + op(0x74), 2, id="shl counts modulo 32"),
    pytest.param(i32_const(-0x7FFFFFFF) + i32_const(1) + op(0x77), 3, id="rotl"),
    pytest.param(i32_const(1) + i32_const(1) + op(0x78), 0x80000000, id="rotr"),
    pytest.param(i32_const(0) + i32_const(1) + I32_SUB, 0xFFFFFFFF, id="sub wraps"),
    pytest.param(i32_const(1) + op(0x67), 31, id="clz"),
    pytest.param(i32_const(0x80) + op(0x68), 7, id="ctz"),
    pytest.param(i32_const(0) + op(0x68), 32, id="ctz of 0"),
    pytest.param(i32_const(-1) + op(0x69), 32, id="popcnt"),
    pytest.param(i32_const(-1) + i32_const(0) + op(0x48), 1, id="lt_s"),
    pytest.param(i32_const(-1) + i32_const(0) + I32_LT_U, 0, id="lt_u"),
    pytest.param(i32_const(0xF0) + i32_const(0x3C) + op(0x71), 0x30, id="and"),
    pytest.param(i32_const(0xF0) + i32_const(0x3C) + op(0x73), 0xCC, id="xor"),
    pytest.param(i64_const(0x100000005) + I32_WRAP_I64, 5, id="wrap_i64"),
    pytest.param(i32_const(0x80) + op(0xC0), 0xFFFFFF80, id="extend8_s"),
    pytest.param(i32_const(0x7FFF) + op(0xC1), 0x7FFF, id="extend16_s"),
    pytest.param(i32_const(10) + i32_const(20) + i32_const(0) + SELECT, 20, id="select on 0"),
    pytest.param(i32_const(10) + i32_const(20) + i32_const(7) + SELECT, 10, id="select on non-zero"),
]
I64_CASES = [
    pytest.param(i32_const(-2) + op(0xAC), 0xFFFFFFFFFFFFFFFE, id="extend_i32_s"),
    pytest.param(i32_const(-2) + I64_EXTEND_I32_U, 0xFFFFFFFE, id="extend_i32_u"),
    pytest.param(i64_const(0x80000000) + op(0xC4), 0xFFFFFFFF80000000, id="extend32_s"),
    pytest.param(i64_const(1 << 62) + i64_const(4) + op(0x7E), 0, id="mul wraps"),
    pytest.param(i64_const(-(1 << 63) + 1) + i64_const(4) + op(0x89), 0x18, id="rotl"),
    pytest.param(i64_const(0) + op(0x79), 64, id="clz of 0"),
    pytest.param(i64_const(-5) + i64_const(-5) + op(0x59), 1, id="ge_s"),
    pytest.param(i64_const(-1) + i64_const(1) + op(0x56), 1, id="gt_u"),
    pytest.param(i64_const(-9) + i64_const(4) + op(0x7F), 0xFFFFFFFFFFFFFFFE, id="div_s"),
]


@pytest.mark.parametrize(("body", "expected"), I32_CASES)
def test_i32_operations(body: bytes, expected: int) -> None:
    assert version_of(body + END, result_type=RETURNS_I32) == expected


@pytest.mark.parametrize(("body", "expected"), I64_CASES)
def test_i64_operations(body: bytes, expected: int) -> None:
    assert version_of(body + END) == expected


@pytest.mark.parametrize("body", [
    i32_const(1) + i32_const(0) + op(0x6E) + I64_EXTEND_I32_U,           # division by zero
    i64_const(-(1 << 63)) + i64_const(-1) + op(0x7F),                    # INT64_MIN / -1
    i64_const(1) + i64_const(0) + op(0x82),                              # rem_u by zero
    UNREACHABLE,
])
def test_traps_give_no_version(body: bytes) -> None:
    assert version_of(body + END) is None


# ----------------------------------------------------------------------------------------------------
# Control flow.

def test_loop_with_br_if_and_locals() -> None:
    """sum = 0; i = 10; do { sum += i; i -= 1 } while i != 0"""
    body = (i32_const(10) + local_set(0)
            + LOOP + EMPTY_BLOCK
            + local_get(1) + local_get(0) + I32_ADD + local_set(1)
            + local_get(0) + i32_const(1) + I32_SUB + local_tee(0) + br_if(0)
            + END + local_get(1) + I64_EXTEND_I32_U + END)
    assert version_of(body, locals_=[(2, I32)]) == 55


def test_br_table_dispatch_through_calls() -> None:
    """case(0) + case(1) + case(7): the table's two entries and its default."""
    case = (BLOCK + EMPTY_BLOCK + BLOCK + EMPTY_BLOCK + BLOCK + EMPTY_BLOCK
            + local_get(0) + br_table([0, 1], 2) + END
            + i32_const(100) + RETURN + END
            + i32_const(200) + RETURN + END
            + i32_const(300) + END)
    body = i32_const(0) + call(1) + i32_const(1) + call(1) + I32_ADD + i32_const(7) + call(1) + I32_ADD \
        + I64_EXTEND_I32_U + END
    assert version_of(body, helpers=[Function(I32_TO_I32, case)]) == 600


def test_branches_carry_block_results() -> None:
    if_else = i32_const(0) + IF + I64_RESULT + i64_const(1) + ELSE + i64_const(2) + END
    branch_with_value = BLOCK + I64_RESULT + i64_const(7) + i64_const(8) + br(0) + END
    typed_block = i32_const(5) + BLOCK + sleb(I32_TO_I32) + i32_const(1) + I32_ADD + END + I64_EXTEND_I32_U
    assert version_of(if_else + END) == 2
    assert version_of(branch_with_value + END) == 8
    assert version_of(typed_block + END) == 6
    assert version_of(if_else + branch_with_value + I64_ADD + typed_block + I64_ADD + END) == 16


def test_loop_branch_unwinds_to_the_loop_label() -> None:
    """A br from inside a nested block back to the loop; the loop runs three times."""
    body = (LOOP + EMPTY_BLOCK + BLOCK + EMPTY_BLOCK
            + local_get(0) + i32_const(1) + I32_ADD + local_tee(0) + i32_const(3) + I32_LT_U + br_if(1)
            + END + END + local_get(0) + I64_EXTEND_I32_U + END)
    assert version_of(body, locals_=[(1, I32)]) == 3


def recursion(depth: int) -> int | None:
    """count(n) = n == 0 ? 0 : count(n - 1) + 1, called with ``depth``."""
    count = (local_get(0) + I32_EQZ + IF + I32_RESULT + i32_const(0) + ELSE
             + local_get(0) + i32_const(1) + I32_SUB + call(1) + i32_const(1) + I32_ADD + END + END)
    return version_of(i32_const(depth) + call(1) + I64_EXTEND_I32_U + END, helpers=[Function(I32_TO_I32, count)])


def test_call_depth_is_bounded() -> None:
    assert recursion(MAX_CALL_DEPTH - 5) == MAX_CALL_DEPTH - 5
    assert recursion(MAX_CALL_DEPTH + 1) is None


def counting_loop(iterations: int) -> bytes:
    """Eight instructions an iteration."""
    return (LOOP + EMPTY_BLOCK + local_get(0) + i32_const(1) + I32_ADD + local_tee(0)
            + i32_const(iterations) + I32_LT_U + br_if(0) + END + local_get(0) + I64_EXTEND_I32_U + END)


def test_step_budget_ends_long_and_endless_loops() -> None:
    assert version_of(counting_loop(STEP_BUDGET // 10), locals_=[(1, I32)]) == STEP_BUDGET // 10
    assert version_of(counting_loop(STEP_BUDGET // 4), locals_=[(1, I32)]) is None
    assert version_of(LOOP + EMPTY_BLOCK + br(0) + END + i64_const(1) + END) is None


# ----------------------------------------------------------------------------------------------------
# Memory.

def test_loads_see_data_segments_and_this_calls_stores() -> None:
    data = [active_data(16, bytes.fromhex("2a00000007000000")), active_data(40, b"\xff")]
    load = i32_const(16) + memory_op(I64_LOAD) + END
    overwrite_low_half = i32_const(16) + i32_const(0x11111111) + memory_op(I32_STORE) + load
    assert version_of(load, data=data) == 0x000000070000002A
    assert version_of(overwrite_low_half, data=data) == 0x0000000711111111
    assert version_of(i32_const(0) + memory_op(I32_LOAD8_S, offset=40) + END, data=data, result_type=RETURNS_I32) \
        == 0xFFFFFFFF


def test_stores_and_loads_across_a_page_boundary() -> None:
    body = (i32_const(65532) + i64_const(0x0102030405060708) + memory_op(I64_STORE)
            + i32_const(65532) + memory_op(I64_LOAD)
            + i32_const(65536) + memory_op(I32_LOAD) + I64_EXTEND_I32_U + I64_ADD + END)
    assert version_of(body, memory_pages=2) == 0x0102030405060708 + 0x01020304


def test_memory_fill_and_copy() -> None:
    body = (i32_const(100) + i32_const(7) + i32_const(8) + b"\xfc" + leb(11) + b"\x00"
            + i32_const(200) + i32_const(100) + i32_const(8) + b"\xfc" + leb(10) + b"\x00\x00"
            + i32_const(200) + memory_op(I64_LOAD) + END)
    assert version_of(body) == 0x0707070707070707


@pytest.mark.parametrize(("body", "pages"), [
    (i32_const(65533) + memory_op(I32_LOAD) + I64_EXTEND_I32_U, 1),       # past the end
    (i32_const(0) + memory_op(I64_LOAD, offset=1 << 40), 1),              # offset past 4 GiB
    (i32_const(0) + memory_op(I64_LOAD), None),                            # no memory at all
    (i32_const(1) + b"\x40\x00" + I64_EXTEND_I32_U, 1),                   # memory.grow
])
def test_memory_out_of_reach_gives_no_version(body: bytes, pages: int | None) -> None:
    assert version_of(body + END, memory_pages=pages) is None


def test_memory_touched_is_bounded() -> None:
    """Each page touched costs 64 KiB here: a module cannot make us hold its whole memory."""
    def touching(pages: int) -> bytes:
        stores = b"".join(i32_const(page * 65536 + 8) + i64_const(page) + memory_op(I64_STORE) for page in range(pages))
        return stores + i32_const(8) + memory_op(I64_LOAD) + i64_const(1) + I64_ADD + END
    assert version_of(touching(MAX_TOUCHED_PAGES), memory_pages=100) == 1
    assert version_of(touching(MAX_TOUCHED_PAGES + 1), memory_pages=100) is None


def test_data_segment_past_the_memory_gives_no_version() -> None:
    """wazero refuses to instantiate such a module; we do not pretend to know its memory."""
    assert version_of(i32_const(0) + memory_op(I64_LOAD) + END, data=[active_data(65530, b"12345678")]) is None


# ----------------------------------------------------------------------------------------------------
# What the evaluator refuses to run.

def test_imports_are_never_called() -> None:
    imports = [func_import("ig", "gadgetAPIVersionFromHost", RETURNS_I64)]
    assert version_of(call(0) + END, imports=imports, function_imports=1) is None


@pytest.mark.parametrize("body", [
    i32_const(0) + b"\x11\x00\x00" + DROP + i64_const(1),                   # call_indirect
    b"\x43\x00\x00\x80\x3f" + DROP + i64_const(1),                          # f32.const
    i64_const(1) + b"\xfd\x0c" + bytes(16) + DROP,                           # SIMD v128.const
    global_get(0),                                                           # the imported global
    global_get(1),                                                           # no such global
])
def test_unmodelled_instructions_give_no_version(body: bytes) -> None:
    imported_global = [name("env") + name("version") + bytes([0x03, I64, 0x00])]
    assert version_of(body + END, imports=imported_global) is None


def test_unmodelled_instruction_on_a_path_not_taken_is_harmless() -> None:
    body = i32_const(0) + IF + EMPTY_BLOCK + b"\x43\x00\x00\x80\x3f" + DROP + b"\x11\x00\x00" + END + i64_const(1)
    assert version_of(body + END) == 1


def test_globals_start_from_the_global_section() -> None:
    globals_ = [bytes([I64, 0]) + i64_const(40) + END,
                bytes([I64, 0]) + global_get(0) + i64_const(2) + I64_ADD + END]   # extended constant
    assert version_of(global_get(1) + END, globals_=globals_) == 42


def test_global_section_with_initialisers_we_do_not_model_is_unknown_not_malformed() -> None:
    globals_ = [bytes([I64, 0]) + i64_const(1) + END, bytes([0x6F, 0]) + b"\xfb\x00\x00" + END]
    assert version_of(global_get(0) + END, globals_=globals_) is None
    assert version_of(i64_const(1) + END, globals_=globals_) == 1


# ----------------------------------------------------------------------------------------------------
# Malformed and invalid bodies: AnalysisError when the bytes do not parse, None when they parse but
# would not validate; never another exception.

@pytest.mark.parametrize(("body", "message"), [
    (ELSE + i64_const(1) + END, "else outside an if"),
    (b"\x42\x80", "unexpected end"),                                         # LEB128 cut short
    (i64_const(1), "unexpected end"),                                        # no final end
    (i64_const(1) + END + b"\x01", "instructions after the function's end"),
])
def test_malformed_bodies_raise_analysis_error(body: bytes, message: str) -> None:
    with pytest.raises(AnalysisError, match=message) as caught:
        version_of(body)
    assert "wasm code section" in str(caught.value) and "byte offset" in str(caught.value)


def test_malformed_data_section_raises_analysis_error_when_read() -> None:
    bad_segment = b"\x03" + i32_const(0) + END + leb(1) + b"x"
    with pytest.raises(AnalysisError, match="unknown data segment flags 3"):
        version_of(i32_const(0) + memory_op(I64_LOAD) + END, data=[bad_segment])


@pytest.mark.parametrize("body", [
    I32_ADD + DROP + i64_const(1),                                           # pops an empty stack
    br(5) + i64_const(1),                                                    # no such label
    local_get(3) + I64_EXTEND_I32_U,                                         # no such local
    call(99),                                                                # no such function
    BLOCK + sleb(99) + END + i64_const(1),                                   # no such block type
    b"",                                                                     # returns nothing
])
def test_invalid_bodies_give_no_version(body: bytes) -> None:
    assert version_of(body + END) is None


def _only_analysis_error(data: bytes) -> None:
    try:
        analyze_wasm(data)
    except AnalysisError as error:
        assert "byte offset" in str(error) and "\n" not in str(error)


@FUZZ
@given(body=st.binary(max_size=64))
def test_random_bodies_never_raise_anything_but_analysis_error(body: bytes) -> None:
    module = ModuleBuilder(types=TYPES, memory_pages=1, functions=[Function(RETURNS_I64, body + END)],
                           globals=[mutable_global(I32, i32_const(0))],
                           exports=[func_export("gadgetAPIVersion", 0)]).build()
    _only_analysis_error(module)


GO_MODULE = go_module()


@FUZZ
@given(positions=st.lists(st.integers(0, len(GO_MODULE) - 1), min_size=1, max_size=3),
       bits=st.lists(st.integers(0, 7), min_size=3, max_size=3))
def test_bit_flipped_go_module_never_raises_anything_but_analysis_error(positions: list[int], bits: list[int]) -> None:
    mutated = bytearray(GO_MODULE)
    for position, bit in zip(positions, bits, strict=False):
        mutated[position] ^= 1 << bit
    _only_analysis_error(bytes(mutated))
