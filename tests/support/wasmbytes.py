"""A tiny WebAssembly assembler for tests: sections, a module builder and the instructions we use.

No wasm toolchain is needed: every module the analysis tests use is spelt out here as bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

I32, I64, F32 = 0x7F, 0x7E, 0x7D
EMPTY_BLOCK = b"\x40"


def leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte | (0 if done else 0x80))
        if done:
            return bytes(out)


def vec(items: list[bytes]) -> bytes:
    return leb(len(items)) + b"".join(items)


def name(text: str) -> bytes:
    raw = text.encode()
    return leb(len(raw)) + raw


def section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + leb(len(payload)) + payload


def func_type(params: list[int], results: list[int]) -> bytes:
    return b"\x60" + vec([bytes([p]) for p in params]) + vec([bytes([r]) for r in results])


def func_import(module: str, field: str, type_index: int) -> bytes:
    return name(module) + name(field) + b"\x00" + leb(type_index)


def func_export(field: str, index: int) -> bytes:
    return name(field) + b"\x00" + leb(index)


# Instructions (the immediates our tests need).
def i32_const(value: int) -> bytes:
    return b"\x41" + sleb(value)


def i64_const(value: int) -> bytes:
    return b"\x42" + sleb(value)


def local_get(index: int) -> bytes:
    return b"\x20" + leb(index)


def local_set(index: int) -> bytes:
    return b"\x21" + leb(index)


def local_tee(index: int) -> bytes:
    return b"\x22" + leb(index)


def global_get(index: int) -> bytes:
    return b"\x23" + leb(index)


def global_set(index: int) -> bytes:
    return b"\x24" + leb(index)


def call(index: int) -> bytes:
    return b"\x10" + leb(index)


def br(depth: int) -> bytes:
    return b"\x0c" + leb(depth)


def br_if(depth: int) -> bytes:
    return b"\x0d" + leb(depth)


def br_table(depths: list[int], default: int) -> bytes:
    return b"\x0e" + vec([leb(depth) for depth in depths]) + leb(default)


def memory_op(opcode: int, offset: int = 0, align: int = 0) -> bytes:
    return bytes([opcode]) + leb(align) + leb(offset)


BLOCK, LOOP, IF, ELSE, END, RETURN, UNREACHABLE, DROP, SELECT = (
    b"\x02", b"\x03", b"\x04", b"\x05", b"\x0b", b"\x0f", b"\x00", b"\x1a", b"\x1b")
I32_EQZ, I32_ADD, I32_SUB, I32_LT_U, I64_ADD, I64_EXTEND_I32_U, I32_WRAP_I64 = (
    b"\x45", b"\x6a", b"\x6b", b"\x49", b"\x7c", b"\xad", b"\xa7")
I32_LOAD, I64_LOAD, I32_LOAD8_S, I32_STORE, I64_STORE = 0x28, 0x29, 0x2C, 0x36, 0x37


@dataclass
class Function:
    type_index: int
    body: bytes
    locals: list[tuple[int, int]] = field(default_factory=list)  # (count, valtype)

    def encoded(self) -> bytes:
        content = vec([leb(count) + bytes([valtype]) for count, valtype in self.locals]) + self.body
        return leb(len(content)) + content


@dataclass
class ModuleBuilder:
    """Sections in the binary format's order; empty ones are left out."""

    types: list[bytes] = field(default_factory=lambda: [func_type([], [I64])])
    imports: list[bytes] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)
    memory_pages: int | None = None
    globals: list[bytes] = field(default_factory=list)  # type, mutability and initialiser, ready-made
    exports: list[bytes] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)  # segments, ready-made

    def build(self) -> bytes:
        out = b"\0asm\x01\0\0\0" + section(1, vec(self.types))
        if self.imports:
            out += section(2, vec(self.imports))
        out += section(3, vec([leb(function.type_index) for function in self.functions]))
        if self.memory_pages is not None:
            out += section(5, vec([b"\x00" + leb(self.memory_pages)]))
        if self.globals:
            out += section(6, vec(self.globals))
        out += section(7, vec(self.exports))
        out += section(10, vec([function.encoded() for function in self.functions]))
        if self.data:
            out += section(11, vec(self.data))
        return out


def mutable_global(valtype: int, initialiser: bytes) -> bytes:
    return bytes([valtype, 1]) + initialiser + END


def active_data(address: int, payload: bytes) -> bytes:
    return b"\x00" + i32_const(address) + END + leb(len(payload)) + payload
