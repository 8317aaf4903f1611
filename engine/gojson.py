"""JSON as Go's encoding/json writes it, for outputs and contents ig makes with ``json.Marshal``."""

from __future__ import annotations

import json
import re
from typing import Any

from .gonumbers import json_float


def go_json(obj: Any, pretty: bool = False) -> str:
    """JSON as Go's encoding/json writes it (``Marshal``, or ``MarshalIndent`` with two spaces):
    HTML-escaped strings, floats as Go formats a float64 (``1e-7``, ``100``), ints as they are.
    Map keys are written in the order given: Go sorts a map's keys, a struct keeps its field order,
    so sorting is the caller's job."""
    out: list[str] = []
    _encode(obj, out, "\n" if pretty else "", pretty)
    return "".join(out)


# encoding/json escapes these (HTML-safe by default); a lone surrogate is a byte that was not UTF-8
# (kept by surrogateescape), which Go writes as U+FFFD
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_NEEDS_ESCAPE = re.compile("[<>&\u2028\u2029\udc80-\udcff]")


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
