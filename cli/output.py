"""What commands share about output: the ``-o`` option, and Go's JSON (:mod:`gadgetstore.engine.gojson`)
assembled from pieces encoded once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from gadgetstore.engine.gojson import go_json, go_json_string

__all__ = ["IMPORT_OUTPUTS", "INSPECT_OUTPUTS", "LIST_OUTPUTS", "go_json", "go_json_object_of_objects",
           "go_json_string", "output_option"]

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


def go_json_object_of_objects(entries: list[tuple[str, list[tuple[str, str]]]], pretty: bool) -> str:
    """``go_json`` of ``{key: {field: value, ...}, ...}`` whose values are given as JSON literals already.

    The same text as encoding the dict, without walking megabytes of content through the
    indenting encoder: each value was encoded once, as a string, by whoever had it.
    """
    if not entries:
        return "{}"
    keys = [go_json_string(key) for key, _ in entries]
    if not pretty:
        return "{" + ",".join(key + ":{" + ",".join(go_json_string(name) + ":" + value for name, value in fields) + "}"
                              for key, (_, fields) in zip(keys, entries, strict=True)) + "}"
    parts = []
    for key, (_, fields) in zip(keys, entries, strict=True):
        body = ",\n".join(f"    {go_json_string(name)}: {value}" for name, value in fields)
        parts.append(f"  {key}: {{\n{body}\n  }}" if fields else f"  {key}: {{}}")
    return "{\n" + ",\n".join(parts) + "\n}"
