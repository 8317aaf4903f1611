"""Bounds-checked little/big-endian reads that fail with :class:`AnalysisError`.

Every decoder in this package reads untrusted layer bytes; funnelling all reads through
here guarantees that a short or corrupt buffer surfaces as one ``AnalysisError`` that names
the layer part and the byte offset, instead of a ``struct.error`` or ``IndexError``.
"""

from __future__ import annotations

import struct

from gadgetstore.engine.errors import AnalysisError


def analysis_error(part: str, offset: int, problem: str) -> AnalysisError:
    """Build the one-line error every decoder raises: ``<part>: <problem> at byte offset <n>``."""
    return AnalysisError(f"{part}: {problem} at byte offset {offset}")


class ByteReader:
    """Random-access reads of fixed-size integers from one buffer.

    ``base`` is the position of ``data`` inside the enclosing file so that error messages
    report offsets a user can look up with a hex dump of the whole layer.
    """

    __slots__ = ("_u16", "_u32", "_u64", "base", "data", "little_endian", "part")

    def __init__(self, data: bytes, part: str, *, little_endian: bool = True, base: int = 0) -> None:
        self.data = data
        self.part = part
        self.base = base
        self.little_endian = little_endian
        order = "<" if little_endian else ">"
        self._u16 = struct.Struct(order + "H")
        self._u32 = struct.Struct(order + "I")
        self._u64 = struct.Struct(order + "Q")

    def __len__(self) -> int:
        return len(self.data)

    def error(self, offset: int, problem: str) -> AnalysisError:
        return analysis_error(self.part, self.base + offset, problem)

    def need(self, offset: int, size: int, what: str) -> None:
        """Fail unless ``size`` bytes starting at ``offset`` are inside the buffer."""
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise self.error(offset, f"{what} truncated (needs {size} bytes, buffer has {len(self.data)})")

    def u8(self, offset: int, what: str = "byte") -> int:
        self.need(offset, 1, what)
        return self.data[offset]

    def u16(self, offset: int, what: str = "u16") -> int:
        self.need(offset, 2, what)
        return int(self._u16.unpack_from(self.data, offset)[0])

    def u32(self, offset: int, what: str = "u32") -> int:
        self.need(offset, 4, what)
        return int(self._u32.unpack_from(self.data, offset)[0])

    def u64(self, offset: int, what: str = "u64") -> int:
        self.need(offset, 8, what)
        return int(self._u64.unpack_from(self.data, offset)[0])

    def u32_array(self, offset: int, count: int, what: str) -> tuple[int, ...]:
        """Read ``count`` consecutive u32 values in one call (BTF records are u32 arrays)."""
        self.need(offset, 4 * count, what)
        order = "<" if self.little_endian else ">"
        return struct.unpack_from(f"{order}{count}I", self.data, offset)


def decode_name(raw: bytes) -> str:
    """Decode a C string so that invalid UTF-8 survives byte for byte (as lone surrogates).

    Go keeps names as raw bytes; the JSON encoder later turns each invalid byte into U+FFFD,
    exactly as Go's ``encoding/json`` does, and mermaid output writes the bytes back unchanged.
    """
    return raw.decode("utf-8", errors="surrogateescape")


def encode_text(text: str) -> bytes:
    """Inverse of :func:`decode_name` for text outputs (mermaid, plain text)."""
    return text.encode("utf-8", errors="surrogateescape")
