"""Program listings: cilium's ``Instructions.String()`` and IG's ``SourceWithRelocation`` text.

These two strings are the ``Source`` and ``SourceWithRelocation`` fields of
``ebpf.programs``; both walk the flattened instruction list of one program.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gadgetstore.engine.analysis.btf import Btf
from gadgetstore.engine.analysis.insn import Instruction, format_instruction

# Unicode White_Space, which Go's strings.TrimSpace removes (Python's strip() also removes \x1c-\x1f).
GO_WHITESPACE = ("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                 "\u200a\u2028\u2029\u202f\u205f\u3000")


def offset_width(instruction_count: int) -> int:
    """Digits for raw offsets, assuming every instruction is double wide (cilium's guess)."""
    if instruction_count <= 0:
        return 0
    return math.ceil(math.log10(instruction_count * 2))


class InstructionTexts:
    """Memoised ``format_instruction``: every instruction is printed in both listings, and a
    subprogram's instructions in every program that calls it.

    Keyed by ``id``: the spec owning the instructions outlives one analysis, so ids stay unique.
    """

    def __init__(self) -> None:
        self._texts: dict[int, str] = {}

    def __call__(self, instruction: Instruction) -> str:
        text = self._texts.get(id(instruction))
        if text is None:
            text = self._texts[id(instruction)] = format_instruction(instruction)
        return text


def format_source(instructions: list[Instruction],
                  text_of: Callable[[Instruction], str] = format_instruction) -> str:
    """``fmt.Sprint(asm.Instructions)``: labels, ``; source`` comments and numbered instructions."""
    width = offset_width(len(instructions))
    comment_pad = " ".rjust(width)
    lines: list[str] = []
    raw_offset = 0
    for instruction in instructions:
        if instruction.symbol:
            lines.append(f"{instruction.symbol}:\n")
        if instruction.source_line:
            line = instruction.source_line.strip(GO_WHITESPACE)
            if line:
                lines.append(f"\t{comment_pad}; {line}\n")
        lines.append(f"\t{str(raw_offset).rjust(width)}: {text_of(instruction)}\n")
        raw_offset += instruction.slots
    return "".join(lines)


def format_with_relocations(instructions: list[Instruction], btf: Btf,
                            text_of: Callable[[Instruction], str] = format_instruction) -> str:
    """IG's ``getSourceWithRelocations``: raw source lines and CO-RE relocations before each insn."""
    lines: list[str] = []
    for instruction in instructions:
        if instruction.source_line is not None:
            lines.append(f"; {instruction.source_line}\n")
        if instruction.core_relocation is not None:
            lines.append(f"; {instruction.core_relocation.go_string(btf)}\n")
        lines.append(f"{text_of(instruction)}\n")
    return "".join(lines)
