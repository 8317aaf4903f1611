"""JSON text as Go's ``encoding/json`` writes it, which is how ig prints every JSON value.

Compact output has no spaces; indented output is ``MarshalIndent(v, "", "  ")``; ``<``, ``>``, ``&``,
U+2028 and U+2029 are escaped (Go's HTML-safe default); other non-ASCII characters stay as they are;
a lone surrogate (a byte that was not UTF-8, kept by ``surrogateescape``) is written as U+FFFD; floats
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
_NEEDS_ESCAPE = re.compile("[<>&\u2028\u2029\udc80-\udcff]")


def go_escape(text: str) -> str:
    """Go's HTML-safe escapes; a character that does not occur costs one fast scan, not a copy."""
    for raw, escaped in _GO_ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
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


def go_unmarshal(text: str) -> Any:
    """``json.Unmarshal`` into ``interface{}``: objects become Go maps, which marshal with sorted keys,
    and every number a float64 (``5`` prints as ``5`` again, ``2**64-1`` as ``18446744073709552000``)."""
    return json.loads(text, object_pairs_hook=lambda pairs: dict(sorted(pairs)), parse_int=float,
                      parse_constant=_no_constant)


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
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES.get(m[0], "\\ufffd"), encoded)


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
