"""Output encodings shared by commands: Go-compatible JSON (ig marshals with encoding/json) and YAML."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from .gonumbers import json_float

F = TypeVar("F", bound=Callable[..., Any])

LIST_OUTPUTS = ("columns", "json", "jsonpretty")
"""``image list -o``, in ig's order (cmd/common/image/list.go)."""
INSPECT_OUTPUTS = ("yaml", "json", "jsonpretty")
"""``image inspect -o`` (cmd/common/image/inspect.go); jsonpretty is the default."""
IMPORT_OUTPUTS = ("json", "jsonpretty")
"""``image import -o`` (cmd/common/image/import.go); without it, plain lines."""


def output_option(values: Sequence[str], default: str) -> Callable[[F], F]:
    """``-o/--output`` with its values in ``--help``, worded as ig words it; ``default`` may be ""
    (a command whose plain output is no mode of its own: ``image import``)."""
    choices = [*values] if default else ["", *values]
    shown = default or "plain lines"
    return click.option(
        "-o", "--output", type=click.Choice(choices), default=default, metavar="[" + "|".join(values) + "]",
        help=f"Output mode, possible values are: {', '.join(values)} (default: {shown}).",
    )


def go_json(obj: Any, pretty: bool = False) -> str:
    """JSON as Go's encoding/json writes it (``Marshal``, or ``MarshalIndent`` with two spaces):
    HTML-escaped strings, floats as Go formats a float64 (``1e-7``, ``100``), ints as they are.
    Map keys are written in the order given: Go sorts a map's keys, a struct keeps its field order,
    so sorting is the caller's job."""
    out: list[str] = []
    _encode(obj, out, "\n" if pretty else "", pretty)
    return "".join(out)


_GO_HTML_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029"))


def _go_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    for raw, escaped in _GO_HTML_ESCAPES:
        encoded = encoded.replace(raw, escaped)
    return encoded


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
