"""Go-compatible JSON output (ig prints with encoding/json)."""

from __future__ import annotations

import pytest

from gadgetstore.cli.output import go_json, go_json_object_of_objects, go_json_string

TRICKY = 'a "quoted" <tag> & more\n\ttab \\ back \u2028 \u2029 é ✓ \x01'


@pytest.mark.parametrize("pretty", [False, True])
def test_object_of_objects_from_literals_is_go_json_of_the_dict(pretty: bool) -> None:
    """The listing of every key is assembled from cached literals; it must be the very text go_json makes."""
    value = {"ebpf.flowchart": {"content": "flowchart LR\n a --> b", "contentType": "text/mermaid"},
             "oci.metadata": {"content": TRICKY, "contentType": "text/yaml"}, "x": {}}
    entries = [(key, [(name, go_json_string(text)) for name, text in fields.items()]) for key, fields in value.items()]
    assert go_json_object_of_objects(entries, pretty) == go_json(value, pretty)
    assert go_json_object_of_objects([], pretty) == go_json({}, pretty) == "{}"


def test_go_escapes() -> None:
    assert go_json_string(TRICKY) == ('"a \\"quoted\\" \\u003ctag\\u003e \\u0026 more\\n\\ttab \\\\ back '
                                      '\\u2028 \\u2029 é ✓ \\u0001"')
