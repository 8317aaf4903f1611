"""sigs.k8s.io/yaml Marshal: go-yaml v2's encode.go (the style each value asks for) and emitterc.go."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from gadgetstore.engine.gonumbers import format_float, json_float

from .scalars import BASE60_FLOAT, INT, STR, GoYamlError, resolve


def _natural_less(a: str, b: str) -> bool:
    """sorter.go keyList.Less for two string keys: letters by code point, digit runs by value."""
    for i in range(min(len(a), len(b))):
        if a[i] == b[i]:
            continue
        al, bl = a[i].isalpha(), b[i].isalpha()
        if al and bl:
            return a[i] < b[i]
        if al or bl:
            return bl
        an = bn = 0
        if a[i] == "0" or b[i] == "0":
            j = i - 1
            while j >= 0 and a[j].isdecimal():
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and a[ai].isdecimal():
            an = an * 10 + ord(a[ai]) - 48
            ai += 1
        bi = i
        while bi < len(b) and b[bi].isdecimal():
            bn = bn * 10 + ord(b[bi]) - 48
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return a[i] < b[i]
    return len(a) < len(b)


def _compare_keys(a: str, b: str) -> int:
    return -1 if _natural_less(a, b) else (1 if _natural_less(b, a) else 0)


def _sorted_keys(keys: list[str]) -> list[str]:
    return sorted(keys, key=functools.cmp_to_key(_compare_keys))


PLAIN, SINGLE, DOUBLE, LITERAL = "plain", "single", "double", "literal"
_BREAKS = "\r\n\x85\u2028\u2029"


def _printable(ch: str) -> bool:
    """yamlprivateh.go is_printable, on a code point (4-byte UTF-8 is never printable there)."""
    code = ord(ch)
    return (code == 0x0A or 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF
            or (0xE000 <= code <= 0xFFFD and code != 0xFEFF))


@dataclass
class _Analysis:
    multiline: bool = False
    flow_plain: bool = True
    block_plain: bool = True
    single_quoted: bool = True
    block: bool = True


def _analyze(value: str) -> _Analysis:
    """yaml_emitter_analyze_scalar."""
    if not value:
        return _Analysis(False, False, True, True, False)
    block_ind = flow_ind = line_breaks = special = False
    leading_space = leading_break = trailing_space = trailing_break = break_space = space_break = False
    previous_space = previous_break = False
    if value.startswith(("---", "...")):
        block_ind = flow_ind = True
    preceded_by_ws = True
    last = len(value) - 1
    for i, ch in enumerate(value):
        followed_by_ws = i == last or value[i + 1] in " \t"
        if i == 0:
            if ch in "#,[]{}&*!|>'\"%@`":
                flow_ind = block_ind = True
            elif ch in "?:":
                flow_ind = True
                block_ind = block_ind or followed_by_ws
            elif ch == "-" and followed_by_ws:
                flow_ind = block_ind = True
        elif ch in ",?[]{}":
            flow_ind = True
        elif ch == ":":
            flow_ind = True
            block_ind = block_ind or followed_by_ws
        elif ch == "#" and preceded_by_ws:
            flow_ind = block_ind = True
        if not _printable(ch):
            special = True
        if ch == " ":
            leading_space = leading_space or i == 0
            trailing_space = trailing_space or i == last
            break_space = break_space or previous_break
            previous_space, previous_break = True, False
        elif ch in _BREAKS:
            line_breaks = True
            leading_break = leading_break or i == 0
            trailing_break = trailing_break or i == last
            space_break = space_break or previous_space
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_ws = ch in " \t\x00" or ch in _BREAKS
    out = _Analysis(multiline=line_breaks)
    if leading_space or leading_break or trailing_space or trailing_break:
        out.flow_plain = out.block_plain = False
    if trailing_space:
        out.block = False
    if break_space:
        out.flow_plain = out.block_plain = out.single_quoted = False
    if space_break or special:
        out.flow_plain = out.block_plain = out.single_quoted = out.block = False
    if line_breaks:
        out.flow_plain = out.block_plain = False
    if flow_ind:
        out.flow_plain = False
    if block_ind:
        out.block_plain = False
    return out


def string_style(text: str) -> str:
    """encode.go stringv: the style go-yaml asks the emitter for."""
    tag, _ = resolve("", text)
    can_use_plain = tag == STR and not BASE60_FLOAT.fullmatch(text)  # isBase60Float
    if "\n" in text:
        return LITERAL
    return PLAIN if can_use_plain else DOUBLE


_ESCAPES = {0x00: "0", 0x07: "a", 0x08: "b", 0x09: "t", 0x0A: "n", 0x0B: "v", 0x0C: "f", 0x0D: "r", 0x1B: "e",
            0x22: '"', 0x5C: "\\", 0x85: "N", 0xA0: "_", 0x2028: "L", 0x2029: "P"}


class _Emitter:
    """The parts of emitterc.go a JSON value needs: block mappings and sequences, empty flow ones,
    and scalars; ``best_indent`` 2 and ``best_width`` 80 as go-yaml v2 leaves them."""

    best_indent = 2
    best_width = 80

    def __init__(self) -> None:
        self.out: list[str] = []
        self.column = 0
        self.indent = -1
        self.indents: list[int] = []
        self.flow_level = 0
        self.whitespace = True
        self.indention = True
        self.mapping_context = False
        self.simple_key_context = False

    # output primitives
    def put(self, text: str) -> None:
        self.out.append(text)
        self.column += 1

    def put_break(self) -> None:
        self.out.append("\n")
        self.column = 0

    def write_break(self, ch: str) -> None:
        if ch == "\n":
            self.put_break()
        else:
            self.put(ch)
            self.column = 0

    def increase_indent(self, flow: bool, indentless: bool) -> None:
        self.indents.append(self.indent)
        if self.indent < 0:
            self.indent = self.best_indent if flow else 0
        elif not indentless:
            self.indent += self.best_indent

    def write_indent(self) -> None:
        indent = max(self.indent, 0)
        if not self.indention or self.column > indent or (self.column == indent and not self.whitespace):
            self.put_break()
        while self.column < indent:
            self.put(" ")
        self.whitespace = self.indention = True

    def write_indicator(self, indicator: str, need_whitespace: bool, is_whitespace: bool, is_indention: bool) -> None:
        if need_whitespace and not self.whitespace:
            self.put(" ")
        for ch in indicator:
            self.put(ch)
        self.whitespace = is_whitespace
        self.indention = self.indention and is_indention

    # nodes
    def node(self, value: Any, mapping: bool = False, simple_key: bool = False) -> None:
        self.mapping_context, self.simple_key_context = mapping, simple_key
        if isinstance(value, dict):
            if value:
                self.block_mapping(value)
            else:
                self.empty_flow("{", "}")
        elif isinstance(value, list):
            if value:
                self.block_sequence(value)
            else:
                self.empty_flow("[", "]")
        else:
            text, style = _scalar_text(value)
            self.scalar(text, style)

    def empty_flow(self, start: str, end: str) -> None:
        self.write_indicator(start, True, True, False)
        self.increase_indent(True, False)
        self.indent = self.indents.pop()
        self.write_indicator(end, False, False, False)

    def block_sequence(self, items: list[Any]) -> None:
        self.increase_indent(False, self.mapping_context and not self.indention)
        for item in items:
            self.write_indent()
            self.write_indicator("-", True, False, True)
            self.node(item)
        self.indent = self.indents.pop()

    def block_mapping(self, mapping: dict[str, Any]) -> None:
        self.increase_indent(False, False)
        for key in _sorted_keys(list(mapping)):
            self.write_indent()
            if not _analyze(key).multiline and len(key.encode()) <= 128:  # yaml_emitter_check_simple_key
                self.node(key, mapping=True, simple_key=True)
                self.write_indicator(":", False, False, False)
            else:
                self.write_indicator("?", True, False, True)
                self.node(key, mapping=True)
                self.write_indent()
                self.write_indicator(":", True, False, True)
            self.node(mapping[key], mapping=True)
        self.indent = self.indents.pop()

    def scalar(self, value: str, requested: str) -> None:
        analysis = _analyze(value)
        style = requested
        if self.simple_key_context and analysis.multiline:
            style = DOUBLE
        if style == PLAIN:
            if (self.flow_level and not analysis.flow_plain) or (not self.flow_level and not analysis.block_plain):
                style = SINGLE
            if not value and (self.flow_level or self.simple_key_context):
                style = SINGLE
        if style == SINGLE and not analysis.single_quoted:
            style = DOUBLE
        if style == LITERAL and (not analysis.block or self.flow_level or self.simple_key_context):
            style = DOUBLE
        self.increase_indent(True, False)
        allow_breaks = not self.simple_key_context
        {PLAIN: self.plain, SINGLE: self.single_quoted, DOUBLE: self.double_quoted}.get(
            style, lambda v, _: self.literal(v))(value, allow_breaks)
        self.indent = self.indents.pop()

    # scalar writers
    def plain(self, value: str, allow_breaks: bool) -> None:
        if not self.whitespace:
            self.put(" ")
        spaces = breaks = False
        for i, ch in enumerate(value):
            if ch == " ":
                next_is_space = i + 1 < len(value) and value[i + 1] == " "
                if allow_breaks and not spaces and self.column > self.best_width and not next_is_space:
                    self.write_indent()
                else:
                    self.put(ch)
                spaces = True
            elif ch in _BREAKS:
                if not breaks and ch == "\n":
                    self.put_break()
                self.write_break(ch)
                self.indention = breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(ch)
                self.indention = spaces = breaks = False
        self.whitespace = self.indention = False

    def single_quoted(self, value: str, allow_breaks: bool) -> None:
        self.write_indicator("'", True, False, False)
        spaces = breaks = False
        last = len(value) - 1
        for i, ch in enumerate(value):
            if ch == " ":
                if (allow_breaks and not spaces and self.column > self.best_width and 0 < i < last
                        and value[i + 1] != " "):
                    self.write_indent()
                else:
                    self.put(ch)
                spaces = True
            elif ch in _BREAKS:
                if not breaks and ch == "\n":
                    self.put_break()
                self.write_break(ch)
                self.indention = breaks = True
            else:
                if breaks:
                    self.write_indent()
                if ch == "'":
                    self.put("'")
                self.put(ch)
                self.indention = spaces = breaks = False
        self.write_indicator("'", False, False, False)
        self.whitespace = self.indention = False

    def double_quoted(self, value: str, allow_breaks: bool) -> None:
        self.write_indicator('"', True, False, False)
        spaces = False
        bom = value.startswith("\ufeff")  # is_bom looks at the start of the value, wherever i is
        last = len(value) - 1
        for i, ch in enumerate(value):
            code = ord(ch)
            if not _printable(ch) or bom or ch in _BREAKS or ch in '"\\':
                self.put("\\")
                if code in _ESCAPES:
                    self.put(_ESCAPES[code])
                else:
                    letter, width = ("x", 2) if code <= 0xFF else ("u", 4) if code <= 0xFFFF else ("U", 8)
                    self.put(letter)
                    for digit in f"{code:0{width}X}":
                        self.put(digit)
                spaces = False
            elif ch == " ":
                if allow_breaks and not spaces and self.column > self.best_width and 0 < i < last:
                    self.write_indent()
                    if value[i + 1] == " ":
                        self.put("\\")
                else:
                    self.put(ch)
                spaces = True
            else:
                self.put(ch)
                spaces = False
        self.write_indicator('"', False, False, False)
        self.whitespace = self.indention = False

    def literal(self, value: str) -> None:
        self.write_indicator("|", True, False, False)
        if value and (value[0] == " " or value[0] in _BREAKS):
            self.write_indicator(str(self.best_indent), False, False, False)
        chomp = ""
        if not value or value[-1] not in _BREAKS:
            chomp = "-"
        elif len(value) == 1 or value[-2] in _BREAKS:
            chomp = "+"
        if chomp:
            self.write_indicator(chomp, False, False, False)
        self.put_break()
        self.indention = self.whitespace = True
        breaks = True
        for ch in value:
            if ch in _BREAKS:
                self.write_break(ch)
                self.indention = breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(ch)
                self.indention = breaks = False


def _scalar_text(value: Any) -> tuple[str, str]:
    """A JSON scalar as go-yaml reads it back from ``json.Marshal``'s text and writes it (encode.go)."""
    if value is None:
        return "null", PLAIN
    if isinstance(value, bool):
        return ("true" if value else "false"), PLAIN
    if isinstance(value, str):
        return value, string_style(value)
    if isinstance(value, int):
        return str(value), PLAIN
    tag, number = resolve("", json_float(float(value)))
    if tag == INT:
        return str(number), PLAIN
    text = format_float(number, "g")
    return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(text, text), PLAIN


_REFUSED_BY_GO_YAML = re.compile("[\x7f-\x84\x86-\x9f\ufffe\uffff]")
_NEL_RUN = re.compile(r"[ \t]*\x85(?:[ \t]*\x85)*[ \t]*")


def _reread(value: Any) -> Any:
    """What go-yaml reads back from ``json.Marshal``'s text of ``value``'s strings: json.Marshal
    leaves DEL, C1 controls and U+FFFE/U+FFFF raw, which go-yaml's reader refuses, and NEL raw,
    which a double-quoted YAML scalar folds like a line break."""
    if isinstance(value, dict):
        if any("\x85" in k for k in value):
            raise GoYamlError("yaml: did not find expected ',' or '}'")  # a key cannot span lines
        return {_reread(k): _reread(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reread(v) for v in value]
    if not isinstance(value, str):
        return value
    if _REFUSED_BY_GO_YAML.search(value):
        raise GoYamlError("yaml: control characters are not allowed")
    return _NEL_RUN.sub(lambda m: " " if m[0].count("\x85") == 1 else "\n" * (m[0].count("\x85") - 1), value)


def marshal(value: Any) -> str:
    """``yaml.Marshal(value)`` (sigs.k8s.io/yaml) of a value decoded from JSON; raises GoYamlError
    where it fails."""
    emitter = _Emitter()
    emitter.node(_reread(value))
    emitter.write_indent()  # yaml_emitter_emit_document_end
    return "".join(emitter.out)

