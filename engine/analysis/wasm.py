"""A small WebAssembly binary reader for the ``wasm.*`` extra-info keys.

IG compiles the module with wazero, lists the function imports of host module ``ig``
(``wasm.upcalls``) and calls the exported ``gadgetAPIVersion`` (``wasm.gadgetAPIVersion``).
The reader keeps what running that one export needs (globals, memory size, active data
segments, function bodies and their locals); :mod:`.wasmexec` runs it.
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
SECTION_MEMORY, SECTION_GLOBAL, SECTION_DATA = 5, 6, 11
_CHECKED_SECTIONS = frozenset({SECTION_TYPE, SECTION_IMPORT, SECTION_FUNCTION, SECTION_MEMORY, SECTION_EXPORT,
                               SECTION_CODE})
KIND_FUNC, KIND_TABLE, KIND_MEMORY, KIND_GLOBAL, KIND_TAG = 0, 1, 2, 3, 4
VALTYPE_I32, VALTYPE_I64 = 0x7F, 0x7E
_VALTYPES = frozenset({0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F})
_REFTYPES = frozenset({0x70, 0x6F})
PAGE_SIZE = 65536
_MASKS = {VALTYPE_I32: 0xFFFFFFFF, VALTYPE_I64: 0xFFFFFFFFFFFFFFFF}


@dataclass(frozen=True, slots=True)
class FuncType:
    params: tuple[int, ...]
    results: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Global:
    """One global of the index space; ``value`` is ``None`` when it is not a known integer
    (imported, a float or reference, or an initialiser we do not evaluate)."""

    valtype: int
    mutable: bool
    value: int | None


@dataclass(frozen=True, slots=True)
class DataSegment:
    """An active segment of memory 0: ``data[start:end]`` is copied to address ``address``."""

    address: int
    start: int
    end: int


@dataclass(slots=True)
class WasmModule:
    """Only what the extra info needs: types, imports, functions, exports, globals, memory, data.

    ``globals`` is ``None`` when its section uses initialisers we do not model (the module may
    still be valid); ``memory_size`` is ``None`` without a memory of our own (none, imported,
    64-bit or several). The data section is only located: Go modules hold tens of thousands of
    segments, and most evaluations never read them (see :func:`data_segments`).
    """

    types: list[FuncType] = field(default_factory=list)
    imported_functions: list[tuple[str, str, int]] = field(default_factory=list)
    function_types: list[int] = field(default_factory=list)
    exports: dict[str, tuple[int, int]] = field(default_factory=dict)
    bodies: list[tuple[int, int]] = field(default_factory=list)  # (expression start, end) file offsets
    locals: list[tuple[tuple[int, int], ...]] = field(default_factory=list)  # (count, valtype) per body
    globals: list[Global] | None = field(default_factory=list)
    memory_size: int | None = None
    memory_count: int = 0
    data_section: tuple[int, int] | None = None  # payload (start, end) file offsets
    data: bytes = b""

    def upcalls(self) -> list[str]:
        return [name for module, name, _ in self.imported_functions if module == IG_MODULE]


class Cursor:
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

    def skip(self, count: int) -> int:
        """Step over ``count`` bytes; their start."""
        start = self.position
        if self.position + count > self.end:
            raise self.error(f"{count}-byte field runs past the end")
        self.position += count
        return start

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
    header = Cursor(data, 0, len(data), "wasm header")
    if header.bytes(4) != WASM_MAGIC:
        raise header.error("bad magic", 0)
    if header.bytes(4) != WASM_VERSION:
        raise header.error("unsupported binary version", 4)
    module = WasmModule(data=data)
    cursor = Cursor(data, 8, len(data), "wasm section header")
    while cursor.position < len(data):
        section_id = cursor.byte()
        size = cursor.unsigned()
        start = cursor.position
        if start + size > len(data):
            raise cursor.error(f"section {section_id} of {size} bytes runs past the end", start)
        body = Cursor(data, start, start + size, f"wasm section {section_id}")
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
        elif section_id == SECTION_MEMORY:
            _read_memories(body, module)
        elif section_id == SECTION_GLOBAL:
            _read_globals(body, module)
        elif section_id == SECTION_DATA:
            module.data_section = (start, start + size)
        elif section_id > 13:
            raise cursor.error(f"unknown section id {section_id}", start - 1)
        fully_read = section_id in _CHECKED_SECTIONS or (section_id == SECTION_GLOBAL and module.globals is not None)
        if fully_read and body.position != body.end:
            raise body.error("section size does not match its contents")
        cursor.position = start + size
    if len(module.bodies) != len(module.function_types):
        raise analysis_error("wasm code section", len(data),
                             f"{len(module.bodies)} bodies for {len(module.function_types)} functions")
    return module


def _read_types(body: Cursor, module: WasmModule) -> None:
    for _ in range(body.count(3)):
        form_at = body.position
        if body.byte() != 0x60:
            raise body.error("unsupported type form (only func types)", form_at)
        params = tuple(_valtype(body) for _ in range(body.count()))
        results = tuple(_valtype(body) for _ in range(body.count()))
        module.types.append(FuncType(params, results))


def _valtype(body: Cursor) -> int:
    at = body.position
    value = body.byte()
    if value not in _VALTYPES:
        raise body.error(f"unknown value type 0x{value:02x}", at)
    return value


def _limits(body: Cursor) -> tuple[int, bool]:
    """(minimum, 64-bit) of a table or memory type."""
    at = body.position
    flags = body.byte()
    if flags > 7:
        raise body.error(f"unknown limits flags 0x{flags:02x}", at)
    bits = 64 if flags & 4 else 32
    minimum = body.unsigned(bits)
    if flags & 1:
        body.unsigned(bits)
    return minimum, bits == 64


def _read_imports(body: Cursor, module: WasmModule) -> None:
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
            module.memory_count += 1
        elif kind == KIND_GLOBAL:
            valtype, mutable = _global_type(body)
            if module.globals is not None:
                module.globals.append(Global(valtype, mutable, None))
        elif kind == KIND_TAG:
            body.byte()
            body.unsigned()
        else:
            raise body.error(f"unknown import kind {kind}", kind_at)


def _global_type(body: Cursor) -> tuple[int, bool]:
    valtype = _valtype(body)
    at = body.position
    mutability = body.byte()
    if mutability > 1:
        raise body.error("bad global mutability", at)
    return valtype, mutability == 1


def _read_memories(body: Cursor, module: WasmModule) -> None:
    for _ in range(body.count(2)):
        minimum, is_64 = _limits(body)
        module.memory_count += 1
        if not is_64:
            module.memory_size = minimum * PAGE_SIZE
    if module.memory_count != 1:
        module.memory_size = None


class _Unmodelled(Exception):
    """A valid construct the reader does not evaluate; the section is left as unknown.

    Internal control flow: the section readers catch it; it never leaves this module."""


def _read_globals(body: Cursor, module: WasmModule) -> None:
    for _ in range(body.count(3)):
        valtype, mutable = _global_type(body)
        try:
            value = _constant_expression(body, module)
        except _Unmodelled:
            module.globals = None
            return
        if module.globals is not None:
            module.globals.append(Global(valtype, mutable, value & _MASKS[valtype]
                                         if value is not None and valtype in _MASKS else None))


def _constant_expression(body: Cursor, module: WasmModule) -> int | None:
    """Value of an initialiser (integer constants, their sums and products, immutable globals)."""
    stack: list[int | None] = []
    while True:
        at = body.position
        opcode = body.byte()
        if opcode == 0x0B:
            return stack[0] if len(stack) == 1 else None
        if opcode == 0x41:
            stack.append(body.signed(32))
        elif opcode == 0x42:
            stack.append(body.signed(64))
        elif opcode in (0x43, 0x44):
            body.bytes(4 if opcode == 0x43 else 8)
            stack.append(None)
        elif opcode == 0x23:
            stack.append(_immutable_global_value(module, body.unsigned()))
        elif opcode == 0xD0:
            body.byte()
            stack.append(None)
        elif opcode == 0xD2:
            body.unsigned()
            stack.append(None)
        elif opcode in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):
            if len(stack) < 2:
                raise body.error("constant expression pops an empty stack", at)
            right, left = stack.pop(), stack.pop()
            operation = (opcode - 0x6A) % 0x12  # 0 add, 1 sub, 2 mul for both widths
            stack.append(None if left is None or right is None else
                         (left + right, left - right, left * right)[operation] & _MASKS[VALTYPE_I64])
        else:
            raise _Unmodelled


def _immutable_global_value(module: WasmModule, index: int) -> int | None:
    if module.globals is None or index >= len(module.globals) or module.globals[index].mutable:
        return None
    return module.globals[index].value


def data_segments(module: WasmModule) -> list[DataSegment] | None:
    """The active segments of memory 0, in instantiation order; ``None`` when one of them is
    placed by an initialiser we do not evaluate or lands in another memory."""
    if module.data_section is None:
        return []
    start, end = module.data_section
    body = Cursor(module.data, start, end, f"wasm section {SECTION_DATA}")
    segments: list[DataSegment] = []
    for _ in range(body.count(1)):
        at = body.position
        flags = body.unsigned()
        if flags > 2:
            raise body.error(f"unknown data segment flags {flags}", at)
        memory = body.unsigned() if flags == 2 else 0
        address: int | None = None
        if flags != 1:
            try:
                address = _constant_expression(body, module)
            except _Unmodelled:
                return None
        payload = body.skip(body.unsigned())
        if flags == 1:
            continue
        if memory != 0 or address is None:
            return None
        segments.append(DataSegment(address & 0xFFFFFFFF, payload, body.position))
    if body.position != body.end:
        raise body.error("section size does not match its contents")
    return segments


def _read_exports(body: Cursor, module: WasmModule) -> None:
    for _ in range(body.count(3)):
        name_at = body.position
        name = body.name()
        kind = body.byte()
        index = body.unsigned()
        if name in module.exports:
            raise body.error(f"duplicate export {name!r}", name_at)
        module.exports[name] = (kind, index)


def _read_code(body: Cursor, module: WasmModule) -> None:
    for _ in range(body.count(2)):
        size = body.unsigned()
        end = body.position + size
        if end > body.end:
            raise body.error(f"function body of {size} bytes runs past the section")
        function = Cursor(body.data, body.position, end, body.part)
        module.locals.append(tuple((function.unsigned(), _valtype(function)) for _ in range(function.count(2))))
        module.bodies.append((function.position, end))
        body.position = end


def function_type(module: WasmModule, function_index: int) -> FuncType:
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
