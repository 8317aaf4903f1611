"""Output encodings shared by commands: Go-compatible JSON (ig marshals with encoding/json) and YAML."""

from __future__ import annotations

from typing import Any

from gadgetstore.engine.gojson import go_json, go_json_string

__all__ = ["go_json", "go_json_object_of_objects", "go_json_string", "to_yaml"]


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


def to_yaml(obj: Any) -> str:
    import yaml  # only YAML output needs it: the other commands start without it

    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True)
