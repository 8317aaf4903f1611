"""A small WebAssembly binary reader for the ``wasm.*`` extra-info keys.

IG compiles the module with wazero, lists the function imports of host module ``ig``
(``wasm.upcalls``) and calls the exported ``gadgetAPIVersion`` (``wasm.gadgetAPIVersion``).
We cannot run arbitrary wasm, so the version is obtained by statically evaluating the
export's body when it is a constant expression (``i64.const 1; end``, as the Rust and TinyGo
SDKs compile it, optionally via ``call``s of other constant functions). Bodies that need real
execution (Go's ``//go:wasmexport`` runtime wrapper) give ``api_version = None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gadgetstore.engine.analysis.binreader import analysis_error
from gadgetstore.engine.errors import AnalysisError

WASM_MAGIC = b"\0asm"
WASM_VERSION = b"\x01\0\0\0"
IG_MODULE = "ig"
API_VERSION_EXPORT = "gadgetAPIVersion"
SUPPORTED_API_VERSION = 1

SECTION_CUSTOM, SECTION_TYPE, SECTION_IMPORT, SECTION_FUNCTION, SECTION_EXPORT, SECTION_CODE = 0, 1, 2, 3, 7, 10
KIND_FUNC, KIND_TABLE, KIND_MEMORY, KIND_GLOBAL, KIND_TAG = 0, 1, 2, 3, 4
VALTYPE_I32, VALTYPE_I64 = 0x7F, 0x7E
_VALTYPES = frozenset({0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F})
_REFTYPES = frozenset({0x70, 0x6F})
_MAX_CALL_DEPTH = 16

OP_NOP, OP_END, OP_RETURN, OP_CALL, OP_DROP, OP_I32_CONST, OP_I64_CONST = 0x01, 0x0B, 0x0F, 0x10, 0x1A, 0x41, 0x42


@dataclass(frozen=True, slots=True)
class FuncType:
    params: tuple[int, ...]
    results: tuple[int, ...]


@dataclass(slots=True)
class WasmModule:
    """Only what the extra info needs: types, function imports, local functions, exports, bodies."""

    types: list[FuncType] = field(default_factory=list)
    imported_functions: list[tuple[str, str, int]] = field(default_factory=list)
    function_types: list[int] = field(default_factory=list)
    exports: dict[str, tuple[int, int]] = field(default_factory=dict)
    bodies: list[tuple[int, int]] = field(default_factory=list)  # (expression start, end) file offsets
    data: bytes = b""

    def upcalls(self) -> list[str]:
        return [name for module, name, _ in self.imported_functions if module == IG_MODULE]


class _Cursor:
    """Sequential reader over one byte range with LEB128 support and offset-carrying errors."""

    def __init__(self, data: bytes, position: int, end: int, part: str) -> None:
        self.data = data
        self.position = position
        self.end = end
        self.part = part

    def error(self, problem: str, position: int | None = None) -> AnalysisError:
        return analysis_error(self.part, self.position if position is None else position, problem)

    def byte(self) -> int:
        if self.position >= self.end:
            raise self.error("unexpected end")
        value = self.data[self.position]
        self.position += 1
        return value

    def bytes(self, count: int) -> bytes:
        if count < 0 or self.position + count > self.end:
            raise self.error(f"{count}-byte field runs past the end")
        value = self.data[self.position:self.position + count]
        self.position += count
        return value

    def _leb128(self, bits: int) -> tuple[int, int, int]:
        """Read one LEB128 group: (value, bits consumed, last byte); too many bytes is an error."""
        start = self.position
        result = shift = 0
        while True:
            value = self.byte()
            result |= (value & 0x7F) << shift
            shift += 7
            if not value & 0x80:
                return result, shift, value
            if shift >= bits + 7:
                raise self.error("LEB128 integer too long", start)

    def unsigned(self, bits: int = 32) -> int:
        start = self.position
        result, _, _ = self._leb128(bits)
        if result >> bits:
            raise self.error(f"LEB128 integer exceeds {bits} bits", start)
        return result

    def signed(self, bits: int) -> int:
        start = self.position
        result, shift, last = self._leb128(bits)
        if last & 0x40:
            result -= 1 << shift
        if not -(1 << (bits - 1)) <= result < 1 << (bits - 1):
            raise self.error(f"signed LEB128 integer exceeds {bits} bits", start)
        return result

    def name(self) -> str:
        start = self.position
        raw = self.bytes(self.unsigned())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("name is not valid UTF-8", start)

    def count(self, minimum_item_size: int = 1) -> int:
        """A vector length, rejected early when the remaining bytes cannot hold it."""
        start = self.position
        length = self.unsigned()
        if length * minimum_item_size > self.end - self.position:
            raise self.error(f"vector of {length} items cannot fit", start)
        return length


def parse_wasm(data: bytes) -> WasmModule:
    header = _Cursor(data, 0, len(data), "wasm header")
    if header.bytes(4) != WASM_MAGIC:
        raise header.error("bad magic", 0)
    if header.bytes(4) != WASM_VERSION:
        raise header.error("unsupported binary version", 4)
    module = WasmModule(data=data)
    cursor = _Cursor(data, 8, len(data), "wasm section header")
    while cursor.position < len(data):
        section_id = cursor.byte()
        size = cursor.unsigned()
        start = cursor.position
        if start + size > len(data):
            raise cursor.error(f"section {section_id} of {size} bytes runs past the end", start)
        body = _Cursor(data, start, start + size, f"wasm section {section_id}")
        if section_id == SECTION_TYPE:
            _read_types(body, module)
        elif section_id == SECTION_IMPORT:
            _read_imports(body, module)
        elif section_id == SECTION_FUNCTION:
            module.function_types = [body.unsigned() for _ in range(body.count())]
        elif section_id == SECTION_EXPORT:
            _read_exports(body, module)
        elif section_id == SECTION_CODE:
            _read_code(body, module)
        elif section_id > 13:
            raise cursor.error(f"unknown section id {section_id}", start - 1)
        if section_id in (SECTION_TYPE, SECTION_IMPORT, SECTION_FUNCTION, SECTION_EXPORT, SECTION_CODE) \
                and body.position != body.end:
            raise body.error("section size does not match its contents")
        cursor.position = start + size
    if len(module.bodies) != len(module.function_types):
        raise analysis_error("wasm code section", len(data),
                             f"{len(module.bodies)} bodies for {len(module.function_types)} functions")
    return module


def _read_types(body: _Cursor, module: WasmModule) -> None:
    for _ in range(body.count(3)):
        form_at = body.position
        if body.byte() != 0x60:
            raise body.error("unsupported type form (only func types)", form_at)
        params = tuple(_valtype(body) for _ in range(body.count()))
        results = tuple(_valtype(body) for _ in range(body.count()))
        module.types.append(FuncType(params, results))


def _valtype(body: _Cursor) -> int:
    at = body.position
    value = body.byte()
    if value not in _VALTYPES:
        raise body.error(f"unknown value type 0x{value:02x}", at)
    return value


def _limits(body: _Cursor) -> None:
    at = body.position
    flags = body.byte()
    if flags > 7:
        raise body.error(f"unknown limits flags 0x{flags:02x}", at)
    bits = 64 if flags & 4 else 32
    body.unsigned(bits)
    if flags & 1:
        body.unsigned(bits)


def _read_imports(body: _Cursor, module: WasmModule) -> None:
    for _ in range(body.count(4)):
        module_name = body.name()
        field_name = body.name()
        kind_at = body.position
        kind = body.byte()
        if kind == KIND_FUNC:
            type_index = body.unsigned()
            if type_index >= len(module.types):
                raise body.error(f"import {field_name!r} uses missing type {type_index}", kind_at)
            module.imported_functions.append((module_name, field_name, type_index))
        elif kind == KIND_TABLE:
            at = body.position
            if body.byte() not in _REFTYPES:
                raise body.error("unknown table element type", at)
            _limits(body)
        elif kind == KIND_MEMORY:
            _limits(body)
        elif kind == KIND_GLOBAL:
            _valtype(body)
            if body.byte() > 1:
                raise body.error("bad global mutability", body.position - 1)
        elif kind == KIND_TAG:
            body.byte()
            body.unsigned()
        else:
            raise body.error(f"unknown import kind {kind}", kind_at)


def _read_exports(body: _Cursor, module: WasmModule) -> None:
    for _ in range(body.count(3)):
        name_at = body.position
        name = body.name()
        kind = body.byte()
        index = body.unsigned()
        if name in module.exports:
            raise body.error(f"duplicate export {name!r}", name_at)
        module.exports[name] = (kind, index)


def _read_code(body: _Cursor, module: WasmModule) -> None:
    for _ in range(body.count(2)):
        size = body.unsigned()
        end = body.position + size
        if end > body.end:
            raise body.error(f"function body of {size} bytes runs past the section")
        function = _Cursor(body.data, body.position, end, body.part)
        for _ in range(function.count(2)):
            function.unsigned()
            _valtype(function)
        module.bodies.append((function.position, end))
        body.position = end


def gadget_api_version(module: WasmModule) -> int | None:
    """Value returned by the ``gadgetAPIVersion`` export, or ``None`` if it needs execution."""
    export = module.exports.get(API_VERSION_EXPORT)
    if export is None or export[0] != KIND_FUNC:
        raise analysis_error("wasm export section", 8, f"no exported function {API_VERSION_EXPORT!r}")
    function_type = _function_type(module, export[1])
    if function_type.params or len(function_type.results) != 1:
        raise analysis_error("wasm export section", 8,
                             f"{API_VERSION_EXPORT} must take no parameters and return one value")
    return _evaluate(module, export[1], 0)


def _function_type(module: WasmModule, function_index: int) -> FuncType:
    imported = len(module.imported_functions)
    if function_index < imported:
        type_index = module.imported_functions[function_index][2]
    elif function_index - imported < len(module.function_types):
        type_index = module.function_types[function_index - imported]
    else:
        raise analysis_error("wasm export section", 8, f"function index {function_index} does not exist")
    if type_index >= len(module.types):
        raise analysis_error("wasm function section", 8, f"function {function_index} uses missing type {type_index}")
    return module.types[type_index]


def _evaluate(module: WasmModule, function_index: int, depth: int) -> int | None:
    """Run a constant-only body: consts, nop, drop, return/end, and calls of such functions."""
    local_index = function_index - len(module.imported_functions)
    if local_index < 0 or depth > _MAX_CALL_DEPTH:
        return None
    start, end = module.bodies[local_index]
    cursor = _Cursor(module.data, start, end, "wasm code section")
    result_type = _function_type(module, function_index).results
    stack: list[int] = []
    while cursor.position < end:
        opcode = cursor.byte()
        if opcode == OP_I32_CONST:
            stack.append(cursor.signed(32) & 0xFFFFFFFF)
        elif opcode == OP_I64_CONST:
            stack.append(cursor.signed(64) & 0xFFFFFFFFFFFFFFFF)
        elif opcode == OP_NOP:
            continue
        elif opcode == OP_DROP and stack:
            stack.pop()
        elif opcode in (OP_RETURN, OP_END):
            return stack[-1] if stack and len(result_type) == 1 else None
        elif opcode == OP_CALL:
            callee = cursor.unsigned()
            callee_type = _function_type(module, callee)
            if callee_type.params or len(callee_type.results) != 1:
                return None
            value = _evaluate(module, callee, depth + 1)
            if value is None:
                return None
            stack.append(value)
        else:
            return None
    return None
