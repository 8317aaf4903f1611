"""JSON text as Go's ``encoding/json`` writes it, which is how ig prints every JSON value.

Compact output has no spaces; indented output is ``MarshalIndent(v, "", "  ")``; ``<``, ``>``, ``&``,
U+2028 and U+2029 are escaped (Go's HTML-safe default); other non-ASCII characters stay as they are;
a byte that was not UTF-8 (kept by ``surrogateescape`` as U+DC80-U+DCFF) is written as the escape
of U+FFFD, as Go writes an invalid byte, and any other lone surrogate (JSON text may escape one) as
U+FFFD itself, the character Go's decoder puts in its place; floats
are formatted as Go formats a float64 (``1e-07``, ``100``), ints as they are. Map keys are written in
the order given: Go sorts a map's keys and a struct keeps its field order, so ordering is the caller's
job (:func:`go_unmarshal` gives Go's map order).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .gonumbers import json_float

_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPES = tuple(_ESCAPES.items())
_SURROGATE = re.compile("[\udc80-\udcff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_NEEDS_ESCAPE = re.compile("[<>&\u2028\u2029\ud800-\udfff]")
# UTF-8 text holds no surrogate: only an escape makes one (a pair too, which json.loads joins)
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")


def go_escape(text: str) -> str:
    """Go's HTML-safe escapes, and U+FFFD for a lone surrogate (which UTF-8 cannot encode); a
    character that does not occur costs one fast scan, not a copy."""
    for raw, escaped in _GO_ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    if _LONE_SURROGATE.search(text):
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return text


def go_json(obj: Any, pretty: bool = False) -> str:
    """``json.Marshal`` (or ``MarshalIndent`` with two spaces) of ``obj``.

    Values without floats or undecodable bytes (nearly all: extra-info listings are strings and
    ints) take the standard library's C encoder; the rest the exact encoder below."""
    if _plain(obj):
        if pretty:
            return go_escape(json.dumps(obj, indent=2, ensure_ascii=False))
        return go_escape(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
    out: list[str] = []
    _encode(obj, out, "\n" if pretty else "", pretty)
    return "".join(out)


def go_json_string(text: str) -> str:
    """One JSON string literal (the same in compact and indented output)."""
    return _go_string(text)


def go_loads(data: bytes | str) -> Any:
    """``json.loads`` of ``data`` as Go's decoder reads it, for JSON from anywhere (a registry, an
    archive, a file another tool wrote): a lone surrogate escape (``"\\ud800"``) is U+FFFD, and a
    value nested deeper than the parser goes raises :class:`ValueError` as any other bad JSON does
    (Go's decoder stops at a depth too), never :class:`RecursionError`."""
    value = plain_loads(data)
    escaped = (_SURROGATE_ESCAPE_BYTES.search(data) if isinstance(data, bytes)
               else _SURROGATE_ESCAPE_TEXT.search(data))
    return _go_decoded(value) if escaped else value


def plain_loads(data: bytes | str) -> Any:
    """``json.loads`` of ``data``, strings exactly as Python reads them, for JSON this program wrote
    (inspect's analysis cache) that must read back as written, a lone surrogate included; as in
    :func:`go_loads`, a value nested deeper than the parser goes (a damaged or forged file) raises
    :class:`ValueError`."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _go_decoded(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD, containers in place; a key that
    becomes another one's replaces it, as in Go."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in list(item):
                inner = item[key]
                if isinstance(inner, str):
                    item[key] = inner = _LONE_SURROGATE.sub("\ufffd", inner)
                elif isinstance(inner, (dict, list)):
                    stack.append(inner)
                if _LONE_SURROGATE.search(key):
                    del item[key]
                    item[_LONE_SURROGATE.sub("\ufffd", key)] = inner
        elif isinstance(item, list):
            for i, inner in enumerate(item):
                if isinstance(inner, str):
                    item[i] = _LONE_SURROGATE.sub("\ufffd", inner)
                elif isinstance(inner, (dict, list)):
                    stack.append(inner)
    return value


def go_unmarshal(text: str) -> Any:
    """``json.Unmarshal`` into ``interface{}``: objects become Go maps, which marshal with sorted keys,
    and every number a float64 (``5`` prints as ``5`` again, ``2**64-1`` as ``18446744073709552000``).
    A value nested deeper than the parser goes raises :class:`ValueError`, as other bad JSON does."""
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: dict(sorted(pairs)), parse_int=float,
                          parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _plain(obj: Any) -> bool:
    """No float and no lone surrogate anywhere in ``obj``: the C encoder writes it as Go does."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return False
        elif isinstance(item, dict):
            for key, value in item.items():
                if not isinstance(key, str) or _SURROGATE.search(key):
                    return False
                stack.append(value)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, float):
            return False
    return True


def _go_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    return _NEEDS_ESCAPE.sub(_escape, encoded)


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    if char in _ESCAPES:
        return _ESCAPES[char]
    return "\\ufffd" if _SURROGATE.fullmatch(char) else "\ufffd"


def _encode(obj: Any, out: list[str], newline: str, pretty: bool) -> None:
    inner = newline + "  " if pretty else ""
    if isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            out.append(("," if i else "") + inner + _go_string(str(key)) + (": " if pretty else ":"))
            _encode(value, out, inner, pretty)
        out.append(newline + "}")
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        out.append("[")
        for i, value in enumerate(obj):
            out.append(("," if i else "") + inner)
            _encode(value, out, inner, pretty)
        out.append(newline + "]")
    elif isinstance(obj, str):
        out.append(_go_string(obj))
    elif obj is None or isinstance(obj, bool):
        out.append("null" if obj is None else ("true" if obj else "false"))
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        out.append(json_float(obj))
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")
