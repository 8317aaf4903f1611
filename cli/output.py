"""Output encodings shared by commands: Go-compatible JSON (ig marshals with encoding/json) and YAML."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
import yaml

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
    """JSON as Go's encoding/json writes it: sorted map keys are the caller's job; HTML-escaped."""
    if pretty:
        text = json.dumps(obj, indent=2, ensure_ascii=False)
    else:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def to_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True)
