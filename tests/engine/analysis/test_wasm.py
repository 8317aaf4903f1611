"""``wasm.*`` extra info from hand-assembled WebAssembly modules (no toolchain needed)."""

from __future__ import annotations

import pytest

from gadgetstore.engine.analysis.extrainfo import analyze_wasm
from gadgetstore.engine.analysis.wasm import parse_wasm
from gadgetstore.engine.errors import AnalysisError
from tests.support.wasmbytes import I32, I64, func_export, func_import, func_type, leb, name, section, sleb, vec

I64_CONST_1 = b"\x42\x01\x0b"  # i64.const 1; end


def build_module(imports: list[bytes], bodies: list[bytes], function_types: list[int],
                 exports: list[bytes], types: list[bytes] | None = None) -> bytes:
    """A module with the given import entries, local functions (type index each) and bodies."""
    types = types if types is not None else [func_type([], [I64]), func_type([I32], [I32]), func_type([I32, I32], [])]
    code = [leb(len(b"\x00" + body)) + b"\x00" + body for body in bodies]
    return (b"\0asm\x01\0\0\0" + section(0, name("producers") + b"ignored custom data")
            + section(1, vec(types)) + section(2, vec(imports))
            + section(3, vec([leb(index) for index in function_types])) + section(7, vec(exports))
            + section(10, vec(code)))


IG_IMPORTS = [
    func_import("wasi_snapshot_preview1", "fd_write", 1),
    func_import("ig", "newDataSource", 2),
    name("env") + name("memory") + b"\x02\x01\x01\x10",          # memory import, min 1 max 16
    name("ig") + name("someGlobal") + b"\x03" + bytes([I32]) + b"\x00",  # a global, not an upcall
    name("ig") + name("table") + b"\x01\x70\x00\x01",             # a table, not an upcall
    func_import("ig", "getDataSource", 1),
    func_import("ig", "newDataSource", 2),                        # duplicates are kept, as wazero does
]


def test_upcalls_and_constant_api_version() -> None:
    module = build_module(IG_IMPORTS, [I64_CONST_1], [0], [func_export("gadgetAPIVersion", 4)])
    assert analyze_wasm(module) == {
        "wasm.upcalls": ("application/json", b'["newDataSource","getDataSource","newDataSource"]'),
        "wasm.gadgetAPIVersion": ("text/plain", b"1"),
    }


def test_module_without_ig_imports_has_empty_upcall_list() -> None:
    module = build_module([func_import("env", "abort", 2)], [I64_CONST_1], [0], [func_export("gadgetAPIVersion", 1)])
    assert analyze_wasm(module)["wasm.upcalls"] == ("application/json", b"[]")


def test_version_returned_through_calls_and_i32_results() -> None:
    types = [func_type([], [I64]), func_type([], [I32])]
    bodies = [b"\x01\x10\x01\x0f\x0b", b"\x41" + sleb(1) + b"\x0b"]  # nop; call 1; return / i32.const 1
    module = build_module([], bodies, [0, 1], [func_export("gadgetAPIVersion", 0)], types)
    assert analyze_wasm(module)["wasm.gadgetAPIVersion"] == ("text/plain", b"1")


def test_unsupported_version_is_rejected_like_ig() -> None:
    module = build_module([], [b"\x42" + sleb(2) + b"\x0b"], [0], [func_export("gadgetAPIVersion", 0)])
    with pytest.raises(AnalysisError, match="unsupported gadget API version 2"):
        analyze_wasm(module)


def test_version_only_an_import_could_give_is_left_out() -> None:
    body = b"\x41\x00\x10\x00\x1a\x42\x01\x0b"  # i32.const 0; call fd_write (import 0); drop; i64.const 1
    module = build_module(IG_IMPORTS, [body], [0], [func_export("gadgetAPIVersion", 4)])
    info = analyze_wasm(module)
    assert "wasm.gadgetAPIVersion" not in info
    assert info["wasm.upcalls"] == ("application/json", b'["newDataSource","getDataSource","newDataSource"]')


@pytest.mark.parametrize(("exports", "function_types", "message"), [
    ([func_export("main", 0)], [0], "no exported function 'gadgetAPIVersion'"),
    ([func_export("gadgetAPIVersion", 0)], [1], "must take no parameters and return one value"),
    ([func_export("gadgetAPIVersion", 7)], [0], "function index 7 does not exist"),
])
def test_bad_version_export(exports: list[bytes], function_types: list[int], message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        analyze_wasm(build_module([], [I64_CONST_1], function_types, exports))


@pytest.mark.parametrize(("data", "message"), [
    (b"\0asm\x02\0\0\0", "unsupported binary version"),
    (b"\0ASM\x01\0\0\0", "bad magic"),
    (b"\0asm\x01\0\0\0\x01\x05\x01", "runs past the end"),
    (b"\0asm\x01\0\0\0\x02\x08\x01\x02\xff\xfe\x01a\x00\x00", "is not valid UTF-8"),
    (b"\0asm\x01\0\0\0\x0e\x00", "unknown section id 14"),
    (b"\0asm\x01\0\0\0\x03\x06\x01\x80\x80\x80\x80\x7f", "LEB128 integer"),
])
def test_malformed_modules_name_part_and_offset(data: bytes, message: str) -> None:
    with pytest.raises(AnalysisError, match=message) as caught:
        parse_wasm(data)
    assert "byte offset" in str(caught.value)
