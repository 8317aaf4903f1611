"""Output encodings shared by commands: Go-compatible JSON (ig marshals with encoding/json) and YAML."""

from __future__ import annotations

import json
from typing import Any

import yaml


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
