"""JSON text as Go's ``encoding/json`` writes it, which is how ig prints every JSON value.

Compact output has no spaces; indented output is ``MarshalIndent(v, "", "  ")``; ``<``, ``>``, ``&``,
U+2028 and U+2029 are escaped (Go's HTML-safe default); other non-ASCII characters stay as they are.
Map keys must already be in Go's order (sorted) when the caller wants a Go map's output.
"""

from __future__ import annotations

import json
from typing import Any

_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def go_escape(text: str) -> str:
    """Go's HTML-safe escapes; a character that does not occur costs one fast scan, not a copy."""
    for raw, escaped in _GO_ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    return text


def go_json(obj: Any, pretty: bool = False) -> str:
    if pretty:
        return go_escape(json.dumps(obj, indent=2, ensure_ascii=False))
    return go_escape(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


def go_json_string(text: str) -> str:
    """One JSON string literal (the same in compact and indented output)."""
    return go_escape(json.dumps(text, ensure_ascii=False))


def go_unmarshal(text: str) -> Any:
    """``json.Unmarshal`` into ``interface{}``: objects become Go maps, which marshal with sorted keys."""
    return json.loads(text, object_pairs_hook=lambda pairs: dict(sorted(pairs)))

