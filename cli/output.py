"""What commands share about output: the ``-o`` option (Go's JSON is :mod:`gadgetstore.engine.gojson`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

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
