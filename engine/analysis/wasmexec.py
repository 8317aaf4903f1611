"""Runs the ``gadgetAPIVersion`` export of a gadget's wasm module to get ``wasm.gadgetAPIVersion``.

IG instantiates the module with wazero, runs ``_initialize`` and calls the export. Rust compiles
the export to a constant, but Go's ``//go:wasmexport`` wrapper calls the Go function with Go's
calling convention: the result travels through linear memory at the Go stack pointer (global 0).
So we interpret one export, with bounds instead of trust:

- the integer subset of wasm: control flow, direct calls, locals and globals, i32/i64 arithmetic,
  comparisons and conversions, loads and stores, ``memory.copy`` and ``memory.fill``;
- globals start from the global section and memory from the active data segments, copied page by
  page on first touch, so a module's megabytes of data cost only what the call reads;
- no imports run (their results are unknowable), nor ``call_indirect``, ``memory.grow``, floats,
  SIMD, references or exceptions; a trap, more than ``STEP_BUDGET`` instructions (decoded plus
  executed), calls nested deeper than ``MAX_CALL_DEPTH``, more than ``MAX_TOUCHED_PAGES`` pages of
  memory touched or a malformed operand stack all end the evaluation with ``None``: the key is
  then left out rather than guessed.

``_initialize`` is not run: Go's runs the whole Go runtime, which calls WASI imports. Its only
effect the Go wrapper depends on is a non-zero stack pointer (the wrapper aborts through
``runtime.notInitialized`` otherwise), so for a module that exports ``_initialize`` and whose
global 0 is a mutable i32 starting at 0 the export runs on a scratch stack at the top of memory;
it runs twice, at two stack addresses, and a result that depends on the address is not trusted.
Truncated or malformed code raises :class:`AnalysisError` from the byte reader.
"""

from __future__ import annotations

from collections.abc import Callable

from gadgetstore.engine.analysis.binreader import analysis_error
from gadgetstore.engine.analysis.wasm import (
    API_VERSION_EXPORT,
    KIND_FUNC,
    PAGE_SIZE,
    VALTYPE_I32,
    Cursor,
    DataSegment,
    FuncType,
    WasmModule,
    data_segments,
    function_type,
)

STEP_BUDGET = 100_000
MAX_CALL_DEPTH = 64
MAX_LOCALS = 50_000
MAX_BULK_BYTES = 1 << 20
MAX_TOUCHED_PAGES = 64
INITIALIZE_EXPORT = "_initialize"

M32, M64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF

Instruction = tuple[int, ...]

OP_UNREACHABLE, OP_NOP, OP_BLOCK, OP_LOOP, OP_IF, OP_ELSE, OP_END = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x0B
OP_BR, OP_BR_IF, OP_BR_TABLE, OP_RETURN, OP_CALL = 0x0C, 0x0D, 0x0E, 0x0F, 0x10
OP_DROP, OP_SELECT, OP_SELECT_TYPED = 0x1A, 0x1B, 0x1C
OP_LOCAL_GET, OP_LOCAL_SET, OP_LOCAL_TEE, OP_GLOBAL_GET, OP_GLOBAL_SET = 0x20, 0x21, 0x22, 0x23, 0x24
OP_MEMORY_SIZE, OP_I32_CONST, OP_I64_CONST = 0x3F, 0x41, 0x42
OP_PREFIX_FC = 0xFC
OP_MEMORY_COPY, OP_MEMORY_FILL = 0xFC0A, 0xFC0B

# Loads: opcode -> (bytes, sign-extend, result bits); stores: opcode -> bytes.
_LOADS = {0x28: (4, False, 32), 0x29: (8, False, 64), 0x2C: (1, True, 32), 0x2D: (1, False, 32),
          0x2E: (2, True, 32), 0x2F: (2, False, 32), 0x30: (1, True, 64), 0x31: (1, False, 64),
          0x32: (2, True, 64), 0x33: (2, False, 64), 0x34: (4, True, 64), 0x35: (4, False, 64)}
_STORES = {0x36: 4, 0x37: 8, 0x3A: 1, 0x3B: 2, 0x3C: 1, 0x3D: 2, 0x3E: 4}
_FLOAT_MEMORY = frozenset({0x2A, 0x2B, 0x38, 0x39})
# Valid instructions we decode (to step over them) but never execute.
_UNMODELLED_PLAIN = frozenset({*range(0x5B, 0x67), *range(0x8B, 0xA7), *range(0xA8, 0xAC), *range(0xAE, 0xC0),
                               0xD1})


class _GiveUp(Exception):
    """The call cannot be evaluated faithfully; the answer is ``None``.

    Internal control flow: :meth:`_Machine.run` turns it into ``None``; it never leaves this module."""


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def _divide(left: int, right: int, bits: int, signed: bool, remainder: bool) -> int:
    mask = (1 << bits) - 1
    if signed:
        left, right = _signed(left & mask, bits), _signed(right & mask, bits)
    else:
        left, right = left & mask, right & mask
    if right == 0:
        raise _GiveUp
    quotient = abs(left) // abs(right)
    if (left < 0) != (right < 0):
        quotient = -quotient
    if not remainder and signed and quotient == 1 << (bits - 1):
        raise _GiveUp  # INT_MIN / -1 overflows
    return (left - right * quotient if remainder else quotient) & mask


def _rotate(value: int, count: int, bits: int, left: bool) -> int:
    mask = (1 << bits) - 1
    count %= bits
    if not left:
        count = (bits - count) % bits
    value &= mask
    return ((value << count) | (value >> (bits - count))) & mask


def _integer_ops(bits: int) -> tuple[dict[int, Callable[[int], int]], dict[int, Callable[[int, int], int]]]:
    """Unary and binary operations of one width, keyed by their opcode."""
    mask = (1 << bits) - 1
    wide = bits == 64
    compare, arithmetic = (0x51, 0x7C) if wide else (0x46, 0x6A)
    unary_base = 0x79 if wide else 0x67

    def s(value: int) -> int:
        return _signed(value & mask, bits)

    def count_trailing(value: int) -> int:
        value &= mask
        return ((value & -value).bit_length() - 1) if value else bits

    unary: dict[int, Callable[[int], int]] = {
        compare - 1: lambda a: int(a & mask == 0),
        unary_base: lambda a: bits - (a & mask).bit_length(),
        unary_base + 1: count_trailing,
        unary_base + 2: lambda a: bin(a & mask).count("1"),
    }
    binary: dict[int, Callable[[int, int], int]] = {
        compare: lambda a, b: int(a & mask == b & mask),
        compare + 1: lambda a, b: int(a & mask != b & mask),
        compare + 2: lambda a, b: int(s(a) < s(b)),
        compare + 3: lambda a, b: int(a & mask < b & mask),
        compare + 4: lambda a, b: int(s(a) > s(b)),
        compare + 5: lambda a, b: int(a & mask > b & mask),
        compare + 6: lambda a, b: int(s(a) <= s(b)),
        compare + 7: lambda a, b: int(a & mask <= b & mask),
        compare + 8: lambda a, b: int(s(a) >= s(b)),
        compare + 9: lambda a, b: int(a & mask >= b & mask),
        arithmetic: lambda a, b: (a + b) & mask,
        arithmetic + 1: lambda a, b: (a - b) & mask,
        arithmetic + 2: lambda a, b: (a * b) & mask,
        arithmetic + 3: lambda a, b: _divide(a, b, bits, True, False),
        arithmetic + 4: lambda a, b: _divide(a, b, bits, False, False),
        arithmetic + 5: lambda a, b: _divide(a, b, bits, True, True),
        arithmetic + 6: lambda a, b: _divide(a, b, bits, False, True),
        arithmetic + 7: lambda a, b: a & b & mask,
        arithmetic + 8: lambda a, b: (a | b) & mask,
        arithmetic + 9: lambda a, b: (a ^ b) & mask,
        arithmetic + 10: lambda a, b: (a << (b % bits)) & mask,
        arithmetic + 11: lambda a, b: (s(a) >> (b % bits)) & mask,
        arithmetic + 12: lambda a, b: (a & mask) >> (b % bits),
        arithmetic + 13: lambda a, b: _rotate(a, b, bits, True),
        arithmetic + 14: lambda a, b: _rotate(a, b, bits, False),
    }
    return unary, binary


_UNARY: dict[int, Callable[[int], int]] = {
    0xA7: lambda a: a & M32,                                  # i32.wrap_i64
    0xAC: lambda a: _signed(a & M32, 32) & M64,               # i64.extend_i32_s
    0xAD: lambda a: a & M32,                                  # i64.extend_i32_u
    0xC0: lambda a: _signed(a & 0xFF, 8) & M32,               # i32.extend8_s
    0xC1: lambda a: _signed(a & 0xFFFF, 16) & M32,            # i32.extend16_s
    0xC2: lambda a: _signed(a & 0xFF, 8) & M64,               # i64.extend8_s
    0xC3: lambda a: _signed(a & 0xFFFF, 16) & M64,            # i64.extend16_s
    0xC4: lambda a: _signed(a & M32, 32) & M64,               # i64.extend32_s
}
_BINARY: dict[int, Callable[[int, int], int]] = {}
for _width in (32, 64):
    _unary_ops, _binary_ops = _integer_ops(_width)
    _UNARY.update(_unary_ops)
    _BINARY.update(_binary_ops)


def gadget_api_version(module: WasmModule) -> int | None:
    """Value returned by the ``gadgetAPIVersion`` export, or ``None`` if we cannot run it faithfully."""
    export = module.exports.get(API_VERSION_EXPORT)
    if export is None or export[0] != KIND_FUNC:
        raise analysis_error("wasm export section", 8, f"no exported function {API_VERSION_EXPORT!r}")
    signature = function_type(module, export[1])
    if signature.params or len(signature.results) != 1:
        raise analysis_error("wasm export section", 8,
                             f"{API_VERSION_EXPORT} must take no parameters and return one value")
    return run_export(module, export[1])


def run_export(module: WasmModule, function_index: int) -> int | None:
    """The single integer result of a no-parameter function, or ``None`` (see the module docstring)."""
    seeds = _scratch_stack_pointers(module)
    codes: dict[int, tuple[list[Instruction], int]] = {}
    results = {_Machine(module, stack_pointer, codes).run(function_index) for stack_pointer in seeds}
    return results.pop() if len(results) == 1 else None


def _scratch_stack_pointers(module: WasmModule) -> tuple[int | None, ...]:
    """``(None,)`` to run from the module's own state, or two stack addresses standing in for
    the stack pointer ``_initialize`` would set (see the module docstring)."""
    initialize = module.exports.get(INITIALIZE_EXPORT)
    stack_global = module.globals[0] if module.globals else None
    if initialize is None or initialize[0] != KIND_FUNC or stack_global is None \
            or (stack_global.valtype, stack_global.mutable, stack_global.value) != (VALTYPE_I32, True, 0) \
            or module.memory_size is None or module.memory_size < 2 * PAGE_SIZE:
        return (None,)
    top = min(module.memory_size, 1 << 32)
    return top - 16, top - PAGE_SIZE - 8


class _Memory:
    """Memory 0 of the instance, kept as the pages this call wrote or read.

    Each page keeps which bytes the call wrote; the page's initial contents (from the data
    segments) are only worked out when the call reads a byte it did not write, so a call that
    reads back only its own stack never walks the data section.
    """

    def __init__(self, module: WasmModule) -> None:
        self.module = module
        self.size = module.memory_size
        self.pages: dict[int, bytearray] = {}
        self.written: dict[int, bytearray] = {}  # page -> 0xFF for each byte the call wrote
        self.segments_by_page: dict[int, list[DataSegment]] | None = None

    def _index_segments(self) -> dict[int, list[DataSegment]]:
        segments = data_segments(self.module)
        if self.size is None or segments is None:
            raise _GiveUp
        by_page: dict[int, list[DataSegment]] = {}
        for segment in segments:
            length = segment.end - segment.start
            if segment.address + length > self.size:
                raise _GiveUp  # instantiation would fail
            for page in range(segment.address // PAGE_SIZE, (segment.address + length - 1) // PAGE_SIZE + 1):
                by_page.setdefault(page, []).append(segment)
        return by_page

    def _initial_page(self, number: int) -> bytearray:
        if self.segments_by_page is None:
            self.segments_by_page = self._index_segments()
        page = bytearray(PAGE_SIZE)
        base = number * PAGE_SIZE
        for segment in self.segments_by_page.get(number, ()):
            first = max(segment.address, base)
            last = min(segment.address + segment.end - segment.start, base + PAGE_SIZE)
            source = segment.start + first - segment.address
            page[first - base:last - base] = self.module.data[source:source + last - first]
        return page

    def _check(self, address: int, length: int) -> None:
        if self.size is None or address < 0 or address + length > self.size:
            raise _GiveUp
        if len(self.pages) >= MAX_TOUCHED_PAGES and (address // PAGE_SIZE not in self.pages
                                                      or (address + length - 1) // PAGE_SIZE not in self.pages):
            raise _GiveUp

    def _readable_page(self, number: int, offset: int, length: int) -> bytearray:
        """The page, with its initial contents merged in if the range holds a byte not written."""
        page = self.pages.get(number)
        written = self.written.get(number)
        if page is not None and (written is None or written.find(0, offset, offset + length) < 0):
            return page
        initial = int.from_bytes(self._initial_page(number), "little")
        if page is not None and written is not None:
            mask = int.from_bytes(written, "little")
            initial = (int.from_bytes(page, "little") & mask) | (initial & ~mask)
        page = self.pages[number] = bytearray(initial.to_bytes(PAGE_SIZE, "little"))
        self.written.pop(number, None)
        return page

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        chunks = []
        while length > 0:
            offset = address % PAGE_SIZE
            take = min(length, PAGE_SIZE - offset)
            chunks.append(bytes(self._readable_page(address // PAGE_SIZE, offset, take)[offset:offset + take]))
            address += take
            length -= take
        return b"".join(chunks)

    def write(self, address: int, data: bytes) -> None:
        self._check(address, len(data))
        done = 0
        while done < len(data):
            number, offset = divmod(address + done, PAGE_SIZE)
            take = min(len(data) - done, PAGE_SIZE - offset)
            page = self.pages.get(number)
            if page is None:
                page = self.pages[number] = bytearray(PAGE_SIZE)
                self.written[number] = bytearray(PAGE_SIZE)
            page[offset:offset + take] = data[done:done + take]
            written = self.written.get(number)
            if written is not None:
                written[offset:offset + take] = b"\xff" * take
            done += take


class _Frame:
    __slots__ = ("code", "labels", "locals", "pc", "results", "stack")

    def __init__(self, code: list[Instruction], local_values: list[int], results: int) -> None:
        self.code = code
        self.pc = 0
        self.locals = local_values
        self.stack: list[int] = []
        self.labels: list[tuple[bool, int, int, int]] = []  # (loop, continuation, arity, stack height)
        self.results = results


class _Machine:
    """One bounded evaluation; every way out other than a result is :class:`_GiveUp`."""

    def __init__(self, module: WasmModule, stack_pointer: int | None,
                 codes: dict[int, tuple[list[Instruction], int]]) -> None:
        self.module = module
        self.steps_left = STEP_BUDGET
        self.globals: list[int | None] | None = (
            None if module.globals is None else [each.value for each in module.globals])
        if stack_pointer is not None and self.globals:
            self.globals[0] = stack_pointer
        self.memory = _Memory(module)
        self.codes = codes  # local function -> (decoded body, declared locals), shared by the runs of one call
        self.function_count = len(module.imported_functions) + len(module.function_types)

    def run(self, function_index: int) -> int | None:
        try:
            results = self._call(function_index)
        except (_GiveUp, IndexError):  # IndexError: an operand stack underflow in an invalid body
            return None
        return results[0] if len(results) == 1 else None

    def _enter(self, function_index: int, arguments: list[int]) -> _Frame:
        imported = len(self.module.imported_functions)
        if function_index < imported:
            raise _GiveUp  # imports are never run
        signature = self._signature(function_index)
        local_index = function_index - imported
        decoded = self.codes.get(local_index)
        if decoded is None:
            decoded = self.codes[local_index] = self._decode(local_index)
        code, declared = decoded
        return _Frame(code, arguments + [0] * declared, len(signature.results))

    def _signature(self, function_index: int) -> FuncType:
        if function_index >= self.function_count:
            raise _GiveUp
        return function_type(self.module, function_index)

    def _decode(self, local_index: int) -> tuple[list[Instruction], int]:
        declared = sum(count for count, _ in self.module.locals[local_index])
        if declared > MAX_LOCALS:
            raise _GiveUp
        start, end = self.module.bodies[local_index]
        code = _decode_body(self.module, Cursor(self.module.data, start, end, "wasm code section"),
                            max(self.steps_left, 0))
        self.steps_left -= len(code)
        return code, declared

    def _call(self, function_index: int) -> list[int]:
        frames = [self._enter(function_index, [])]
        frame = frames[0]
        code, stack, labels = frame.code, frame.stack, frame.labels
        pc = 0
        globals_ = self.globals
        memory = self.memory
        binary, unary = _BINARY, _UNARY
        steps = self.steps_left
        while True:
            steps -= 1
            if steps < 0:
                raise _GiveUp
            instruction = code[pc]
            op = instruction[0]
            pc += 1
            if op == OP_LOCAL_GET:
                stack.append(frame.locals[instruction[1]])
            elif op in (OP_I32_CONST, OP_I64_CONST):
                stack.append(instruction[1])
            elif op in binary:
                right = stack.pop()
                stack.append(binary[op](stack.pop(), right))
            elif op == OP_LOCAL_SET:
                frame.locals[instruction[1]] = stack.pop()
            elif op == OP_LOCAL_TEE:
                frame.locals[instruction[1]] = stack[-1]
            elif op == OP_GLOBAL_GET:
                value = None if globals_ is None else globals_[instruction[1]]
                if value is None:
                    raise _GiveUp
                stack.append(value)
            elif op == OP_GLOBAL_SET:
                if globals_ is None or globals_[instruction[1]] is None:
                    raise _GiveUp
                globals_[instruction[1]] = stack.pop()
            elif op in unary:
                stack.append(unary[op](stack.pop()))
            elif op in _LOADS:
                size, sign, bits = _LOADS[op]
                value = int.from_bytes(memory.read((stack.pop() & M32) + instruction[1], size), "little")
                if sign:
                    value = _signed(value, size * 8) & ((1 << bits) - 1)
                stack.append(value)
            elif op in _STORES:
                size = _STORES[op]
                value = stack.pop() & ((1 << (size * 8)) - 1)
                memory.write((stack.pop() & M32) + instruction[1], value.to_bytes(size, "little"))
            elif op in (OP_BLOCK, OP_LOOP):
                _, end, params, results = instruction
                if op == OP_LOOP:
                    labels.append((True, pc, params, len(stack) - params))
                else:
                    labels.append((False, end + 1, results, len(stack) - params))
            elif op == OP_IF:
                _, otherwise, end, params, results = instruction
                if stack.pop() & M32:
                    labels.append((False, end + 1, results, len(stack) - params))
                elif otherwise != end:
                    labels.append((False, end + 1, results, len(stack) - params))
                    pc = otherwise + 1
                else:
                    pc = end + 1
            elif op == OP_ELSE:
                pc = labels.pop()[1]
            elif op == OP_END and labels:
                labels.pop()
            elif op in (OP_BR, OP_BR_IF, OP_BR_TABLE, OP_RETURN, OP_END):
                if op == OP_BR_IF:
                    if not stack.pop() & M32:
                        continue
                    depth = instruction[1]
                elif op == OP_BR:
                    depth = instruction[1]
                elif op == OP_BR_TABLE:
                    selector = stack.pop() & M32
                    depth = instruction[2 + selector] if selector < len(instruction) - 2 else instruction[1]
                else:
                    depth = len(labels)
                if depth < len(labels):
                    loop, continuation, arity, height = labels[-1 - depth]
                    kept = stack[len(stack) - arity:] if arity else []
                    del stack[height:]
                    stack.extend(kept)
                    del labels[len(labels) - depth - (0 if loop else 1):]  # a loop's label stays
                    pc = continuation
                    continue
                if depth > len(labels):
                    raise _GiveUp
                returned = stack[len(stack) - frame.results:] if frame.results else []
                if len(returned) != frame.results:
                    raise _GiveUp
                frames.pop()
                if not frames:
                    self.steps_left = steps
                    return returned
                frame = frames[-1]
                code, stack, labels, pc = frame.code, frame.stack, frame.labels, frame.pc
                stack.extend(returned)
            elif op == OP_CALL:
                if len(frames) >= MAX_CALL_DEPTH:
                    raise _GiveUp
                params = len(self._signature(instruction[1]).params)
                if len(stack) < params:
                    raise _GiveUp
                arguments = stack[len(stack) - params:] if params else []
                del stack[len(stack) - params:]
                frame.pc = pc
                self.steps_left = steps
                frame = self._enter(instruction[1], arguments)
                steps = self.steps_left
                frames.append(frame)
                code, stack, labels, pc = frame.code, frame.stack, frame.labels, 0
            elif op == OP_DROP:
                stack.pop()
            elif op in (OP_SELECT, OP_SELECT_TYPED):
                condition = stack.pop() & M32
                second = stack.pop()
                first = stack.pop()
                stack.append(first if condition else second)
            elif op == OP_NOP:
                pass
            elif op == OP_MEMORY_SIZE:
                if memory.size is None:
                    raise _GiveUp
                stack.append(memory.size // PAGE_SIZE)
            elif op in (OP_MEMORY_COPY, OP_MEMORY_FILL):
                length = stack.pop() & M32
                source = stack.pop() & M32
                target = stack.pop() & M32
                if length > MAX_BULK_BYTES:
                    raise _GiveUp
                steps -= length // 64
                data = memory.read(source, length) if op == OP_MEMORY_COPY else bytes([source & 0xFF]) * length
                memory.write(target, data)
            else:
                raise _GiveUp  # unreachable, or a decoded instruction we do not model


def _block_type(module: WasmModule, cursor: Cursor) -> tuple[int, int]:
    """(parameters, results) of a block, loop or if."""
    at = cursor.position
    kind = cursor.data[at] if at < cursor.end else -1
    if kind == 0x40:
        cursor.byte()
        return 0, 0
    if kind in (0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F):
        cursor.byte()
        return 0, 1
    index = cursor.signed(33)
    if not 0 <= index < len(module.types):
        raise _GiveUp
    signature = module.types[index]
    return len(signature.params), len(signature.results)


def _memory_argument(cursor: Cursor) -> int:
    """The offset of a load or store; a memory other than 0 is not modelled."""
    align = cursor.unsigned()
    if align & 0x40 and cursor.unsigned() != 0:
        raise _GiveUp
    return cursor.unsigned(64)


def _decode_body(module: WasmModule, cursor: Cursor, limit: int) -> list[Instruction]:
    """One function's instructions, with every block's ``else`` and ``end`` index resolved;
    more than ``limit`` of them ends the evaluation."""
    code: list[Instruction] = []
    open_blocks: list[int] = []
    while True:
        at = cursor.position
        op = cursor.byte()
        index = len(code)
        if index >= limit:
            raise _GiveUp
        if op in (OP_BLOCK, OP_LOOP, OP_IF):
            params, results = _block_type(module, cursor)
            code.append((op, -1, params, results))
            open_blocks.append(index)
        elif op == OP_ELSE:
            if not open_blocks or code[open_blocks[-1]][0] != OP_IF or code[open_blocks[-1]][1] != -1:
                raise cursor.error("else outside an if", at)
            opened = code[open_blocks[-1]]
            code[open_blocks[-1]] = (OP_IF, index, *opened[2:])
            code.append((OP_ELSE,))
        elif op == OP_END:
            code.append((OP_END,))
            if not open_blocks:
                if cursor.position != cursor.end:
                    raise cursor.error("instructions after the function's end")
                return code
            position = open_blocks.pop()
            opened = code[position]
            if opened[0] == OP_IF:
                otherwise = index if opened[1] == -1 else opened[1]
                code[position] = (OP_IF, otherwise, index, *opened[2:])
            else:
                code[position] = (opened[0], index, *opened[2:])
        elif op in (OP_BR, OP_BR_IF, OP_CALL, OP_LOCAL_GET, OP_LOCAL_SET, OP_LOCAL_TEE, OP_GLOBAL_GET,
                    OP_GLOBAL_SET):
            code.append((op, cursor.unsigned()))
        elif op == OP_BR_TABLE:
            depths = [cursor.unsigned() for _ in range(cursor.count())]
            code.append((op, cursor.unsigned(), *depths))
        elif op == OP_I32_CONST:
            code.append((op, cursor.signed(32) & M32))
        elif op == OP_I64_CONST:
            code.append((op, cursor.signed(64) & M64))
        elif op in _LOADS or op in _STORES:
            code.append((op, _memory_argument(cursor)))
        elif op == OP_MEMORY_SIZE:
            if cursor.unsigned() != 0:
                raise _GiveUp
            code.append((op,))
        elif op == OP_SELECT_TYPED:
            for _ in range(cursor.count()):
                cursor.byte()
            code.append((op,))
        elif op == OP_PREFIX_FC:
            code.append(_decode_prefixed(cursor))
        elif op in _BINARY or op in _UNARY or op in (OP_UNREACHABLE, OP_NOP, OP_RETURN, OP_DROP, OP_SELECT) \
                or op in _UNMODELLED_PLAIN:
            code.append((op,))
        else:
            code.append(_decode_unmodelled(op, cursor))


def _decode_prefixed(cursor: Cursor) -> Instruction:
    """``memory.copy`` and ``memory.fill`` on memory 0; the other 0xFC instructions only step over."""
    sub = cursor.unsigned()
    if sub == 10:
        if cursor.unsigned() != 0 or cursor.unsigned() != 0:
            raise _GiveUp
        return (OP_MEMORY_COPY,)
    if sub == 11:
        if cursor.unsigned() != 0:
            raise _GiveUp
        return (OP_MEMORY_FILL,)
    immediates = {8: 2, 9: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1}.get(sub, 0 if sub < 8 else -1)
    if immediates < 0:
        raise _GiveUp
    for _ in range(immediates):
        cursor.unsigned()
    return (0xFC00 | sub,)


def _decode_unmodelled(op: int, cursor: Cursor) -> Instruction:
    """Step over valid instructions we never execute; anything else ends the evaluation."""
    if op in (0x43, 0x44):
        cursor.skip(4 if op == 0x43 else 8)
    elif op in _FLOAT_MEMORY:
        _memory_argument(cursor)
    elif op == 0x40:  # memory.grow
        cursor.unsigned()
    elif op in (0x11, 0x13):  # call_indirect, return_call_indirect
        cursor.unsigned()
        cursor.unsigned()
    elif op in (0x12, 0x25, 0x26, 0xD2):  # return_call, table.get, table.set, ref.func
        cursor.unsigned()
    elif op == 0xD0:  # ref.null
        cursor.byte()
    else:
        raise _GiveUp  # SIMD, exceptions, GC, threads: not decoded at all
    return (op,)
