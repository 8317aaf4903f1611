"""YAML as ig reads and writes it: sigs.k8s.io/yaml v1.6.0 over go-yaml v2 (go.yaml.in/yaml/v2 v2.4.3).

``image inspect`` reads a ``text/yaml`` extra-info value with ``yaml.YAMLToJSON`` and
``json.Unmarshal`` (so go-yaml's YAML 1.1 rules decide what is a bool, a number or null, and every
number ends up a float64), and ``-o yaml`` writes with ``yaml.Marshal`` (``json.Marshal``, read back
by go-yaml, written by go-yaml's libyaml-derived emitter). This module does both, following that
code: resolve.go for plain scalars, decode.go for the document tree, encode.go for the scalar style
each value asks for (a string that would read back as anything but a string is double-quoted, one
with a line break is a literal block) and emitterc.go for what the emitter makes of it (the
analysis of each scalar, quoting, folding long lines at 80 columns, indentation, natural key order).

PyYAML supplies only the parser's events; no PyYAML resolver or emitter is involved.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from calendar import monthrange
from dataclasses import dataclass, field
from typing import Any

import yaml

from gadgetstore.engine.gonumbers import format_float, json_float

STR = "tag:yaml.org,2002:str"
BOOL = "tag:yaml.org,2002:bool"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
NULL = "tag:yaml.org,2002:null"
TIMESTAMP = "tag:yaml.org,2002:timestamp"
MERGE = "tag:yaml.org,2002:merge"
BINARY = "tag:yaml.org,2002:binary"
_RESOLVABLE = {"", STR, BOOL, INT, FLOAT, NULL, TIMESTAMP}


class GoYamlError(ValueError):
    """What go-yaml or sigs.k8s.io/yaml would fail with; the message is theirs, shortened."""


# -- resolve.go --------------------------------------------------------------------------------------

_HINT = {**dict.fromkeys("+-", "S"), **dict.fromkeys("0123456789", "D"), **dict.fromkeys("yYnNtTfFoO~", "M"),
         ".": "."}
_RESOLVE_MAP: dict[str, tuple[str, Any]] = {}
for _values, _tag, _value in (
    (("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), BOOL, True),
    (("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), BOOL, False),
    (("", "~", "null", "Null", "NULL"), NULL, None),
    ((".nan", ".NaN", ".NAN"), FLOAT, math.nan),
    ((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), FLOAT, math.inf),
    (("-.inf", "-.Inf", "-.INF"), FLOAT, -math.inf),
    (("<<",), MERGE, "<<"),
):
    for _text in _values:
        _RESOLVE_MAP[_text] = (_tag, _value)

_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_DOT_FLOAT = re.compile(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?")
_BASE60_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64_MAX = (1 << 64) - 1


def _go_parse_int(text: str, unsigned: bool) -> int | None:
    """``strconv.ParseInt(text, 0, 64)`` (``ParseUint`` with ``unsigned``); None on any error."""
    sign = 1
    body = text
    if not unsigned and body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    base = 10
    lower = body[:2].lower()
    if lower in ("0x", "0o", "0b") and len(body) >= 3:
        base = {"0x": 16, "0o": 8, "0b": 2}[lower]
        body = body[2:]
    elif body.startswith("0") and len(body) > 1:
        base, body = 8, body[1:]
    if not body:
        return None
    digits = "0123456789abcdef"[:base]
    if any(ch not in digits for ch in body.lower()):
        return None
    value = sign * int(body, base)
    if unsigned:
        return value if value <= _UINT64_MAX else None
    return value if _INT64[0] <= value <= _INT64[1] else None


def _go_parse_float(text: str) -> float | None:
    """``strconv.ParseFloat(text, 64)`` for the decimal forms go-yaml passes it; None on error (range too)."""
    value = float(text)
    return None if math.isinf(value) else value


_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9][0-9]?)-([0-9][0-9]?)"
    r"(?:(?:[Tt]([0-9][0-9]?):([0-9][0-9]?):([0-9][0-9]?)(?:[.,][0-9]+)?(?:Z|([-+])([0-9]{2}):([0-9]{2})))"
    r"|(?: ([0-9][0-9]?):([0-9][0-9]?):([0-9][0-9]?)(?:[.,][0-9]+)?))?"
)


def is_timestamp(text: str) -> bool:
    """``parseTimestamp``: the four layouts go-yaml tries with Go's ``time.Parse``, ranges checked."""
    match = _TIMESTAMP_RE.fullmatch(text)
    if match is None:
        return False
    year, month, day = int(match[1]), int(match[2]), int(match[3])
    if not 1 <= month <= 12 or not 1 <= day <= monthrange(year, month)[1]:
        return False
    clock = match[4] or match[10]
    if clock is not None:
        hour, minute, second = (int(match[i]) for i in ((4, 5, 6) if match[4] else (10, 11, 12)))
        if hour >= 24 or minute >= 60 or second >= 60:
            return False
        if match[7] and (int(match[8]) > 24 or int(match[9]) > 60):
            return False
    return True


def resolve(tag: str, text: str) -> tuple[str, Any]:
    """``resolve(tag, in)``: the tag and value go-yaml gives a scalar; raises for a tag it cannot take."""
    if tag not in _RESOLVABLE:
        return tag, text
    rtag, value = _resolve(tag, text)
    if tag in ("", rtag, STR, BINARY):
        return rtag, value
    if tag == FLOAT and rtag == INT:
        return FLOAT, float(value)
    raise GoYamlError(f"yaml: cannot decode {_short(rtag)} `{text}` as a {_short(tag)}")


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


def _resolve(tag: str, text: str) -> tuple[str, Any]:
    hint = _HINT.get(text[0]) if text else "N"
    if hint is None or tag in (STR, BINARY):
        return STR, text
    if text in _RESOLVE_MAP:
        return _RESOLVE_MAP[text]
    if hint == "." and _GO_DOT_FLOAT.fullmatch(text):
        value = _go_parse_float(text)
        if value is not None:
            return FLOAT, value
    if hint in ("D", "S"):
        if tag in ("", TIMESTAMP) and text[:4].isdigit() and text[4:5] == "-" and is_timestamp(text):
            return TIMESTAMP, text
        plain = text.replace("_", "")
        for unsigned in (False, True):
            number = _go_parse_int(plain, unsigned) if plain else None
            if number is not None:
                return INT, number
        if _YAML_STYLE_FLOAT.fullmatch(plain):
            value = _go_parse_float(plain)
            if value is not None:
                return FLOAT, value
        # the 0b and -0b fallbacks of resolve.go only see what ParseInt(plain, 0, 64) refused already
    return STR, text


# -- decode.go: the document tree into Go's interface{} --------------------------------------------

@dataclass(eq=False)
class _Node:
    kind: str  # scalar, mapping, sequence, alias
    tag: str = ""
    implicit: bool = False
    value: str = ""
    children: list[_Node] = field(default_factory=list)
    alias: _Node | None = None


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's own parser when PyYAML has it: go-yaml's parser is a port of it (PyYAML's pure-Python
scanner refuses, for one, a tab inside a plain scalar)."""


def _parse(text: str) -> _Node | None:
    """The first document's tree, from PyYAML's parser events (its resolver and composer are not used)."""
    anchors: dict[str, _Node] = {}
    stack: list[_Node] = []
    root: _Node | None = None

    def add(node: _Node, anchor: str | None) -> None:
        nonlocal root
        if anchor:
            anchors[anchor] = node
        if stack:
            stack[-1].children.append(node)
        else:
            root = node

    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.ScalarEvent):
                add(_Node("scalar", event.tag or "", bool(event.implicit[0]), event.value), event.anchor)
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchors:
                    raise GoYamlError(f"yaml: unknown anchor '{event.anchor}' referenced")
                add(_Node("alias", value=event.anchor or "", alias=anchors[event.anchor or ""]), None)
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                kind = "sequence" if isinstance(event, yaml.SequenceStartEvent) else "mapping"
                node = _Node(kind, event.tag or "")
                add(node, event.anchor)
                stack.append(node)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                stack.pop()
            elif isinstance(event, yaml.DocumentEndEvent):
                break
    except yaml.YAMLError as err:
        raise GoYamlError(f"yaml: {err}".replace("\n", " ")) from None
    return root


_ALIAS_RATIO_LOW, _ALIAS_RATIO_HIGH = 400_000, 4_000_000


def _allowed_alias_ratio(decodes: int) -> float:
    if decodes <= _ALIAS_RATIO_LOW:
        return 0.99
    if decodes >= _ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * ((decodes - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW))


@dataclass
class _Decoder:
    decodes: int = 0
    aliased: int = 0
    alias_depth: int = 0
    active: set[int] = field(default_factory=set)

    def unmarshal(self, node: _Node) -> Any:
        self.decodes += 1
        if self.alias_depth:
            self.aliased += 1
        if (self.aliased > 100 and self.decodes > 1000
                and self.aliased / self.decodes > _allowed_alias_ratio(self.decodes)):
            raise GoYamlError("yaml: document contains excessive aliasing")
        if node.kind == "alias":
            assert node.alias is not None
            if id(node) in self.active:
                raise GoYamlError(f"yaml: anchor '{node.value}' value contains itself")
            self.active.add(id(node))
            self.alias_depth += 1
            try:
                return self.unmarshal(node.alias)
            finally:
                self.alias_depth -= 1
                self.active.discard(id(node))
        if node.kind == "scalar":
            return self._scalar(node)
        if node.kind == "sequence":
            return [self.unmarshal(child) for child in node.children]
        out: dict[Any, Any] = {}
        self._mapping(node, out)
        return out

    @staticmethod
    def _scalar(node: _Node) -> Any:
        if not node.tag and not node.implicit:
            return node.value  # quoted
        tag, value = resolve(node.tag, node.value)
        if tag == BINARY:
            try:
                data = base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
                return data.decode("utf-8", errors="replace")
            except binascii.Error:
                raise GoYamlError("yaml: !!binary value contains invalid base64 data") from None
        if tag == TIMESTAMP:
            return node.value  # go-yaml v2 keeps a timestamp a string in an interface{}
        return value

    def _mapping(self, node: _Node, out: dict[Any, Any]) -> None:
        pairs = node.children
        for key_node, value_node in zip(pairs[::2], pairs[1::2], strict=True):
            if key_node.kind == "scalar" and key_node.value == "<<" and (key_node.implicit or key_node.tag == MERGE):
                self._merge(value_node, out)
                continue
            key = self.unmarshal(key_node)
            if isinstance(key, (dict, list)):
                raise GoYamlError(f"yaml: invalid map key: {key!r}")
            out[_GoKey(key)] = self.unmarshal(value_node)

    def _merge(self, node: _Node, out: dict[Any, Any]) -> None:
        def target(item: _Node) -> _Node:
            if item.kind == "mapping" or (item.kind == "alias" and item.alias is not None
                                          and item.alias.kind == "mapping"):
                return item
            raise GoYamlError("yaml: map merge requires map or sequence of maps as the value")

        items = [target(node)] if node.kind != "sequence" else [target(i) for i in reversed(node.children)]
        for item in items:
            merged = self.unmarshal(item)
            out.update(merged)


@dataclass(frozen=True)
class _GoKey:
    """A map key as Go's map[interface{}]interface{} tells keys apart: by type and value."""

    value: Any

    def __hash__(self) -> int:
        return hash((type(self.value), self.value))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _GoKey) and type(other.value) is type(self.value)
                and other.value == self.value)


def _key_string(key: Any) -> str:
    """sigs.k8s.io/yaml convertToJSONableObject: YAML keys become JSON's string keys."""
    if isinstance(key, _GoKey):
        key = key.value
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        text = format_float(key, "g", 32)
        return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(text, text)
    raise GoYamlError("unsupported map key of type: <nil>")


def _jsonable(value: Any) -> Any:
    """convertToJSONableObject, then the ``json.Marshal``/``json.Unmarshal`` round trip: every number a float64."""
    if isinstance(value, dict):
        converted = {_key_string(k): _jsonable(v) for k, v in value.items()}
        return dict(sorted(converted.items()))  # json.Marshal writes a map's keys sorted
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    number = float(value)
    json_float(number)  # raises for NaN and ±Inf, as json.Marshal does
    return number


def yaml_to_json_object(text: str) -> dict[str, Any] | None:
    """inspect.go's ``text/yaml`` case: ``yaml.YAMLToJSON``, then ``json.Unmarshal`` into a map
    (numbers are float64, keys sorted); errors are worded as ig words them."""
    try:
        root = _parse(text)
        converted = _jsonable(None if root is None else _Decoder().unmarshal(root))
    except ValueError as err:
        raise GoYamlError(f"converting YAML to JSON: {err}") from None
    if converted is not None and not isinstance(converted, dict):
        kind = "array" if isinstance(converted, list) else (
            "string" if isinstance(converted, str) else "bool" if isinstance(converted, bool) else "number")
        raise GoYamlError(f"unmarshalling JSON content: json: cannot unmarshal {kind} into Go value of type "
                          "map[string]interface {}")
    return converted


# -- encode.go and emitterc.go: yaml.Marshal of a JSON value ---------------------------------------


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
    can_use_plain = tag == STR and not _BASE60_FLOAT.fullmatch(text)  # isBase60Float
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

