"""engine/gonumbers.py and engine/gojson.py: numbers and JSON as Go's strconv and encoding/json write them.

Each expected value follows from the Go code cited and was printed by that code too (a Go program
built with ig's toolchain, go1.26).
"""

from __future__ import annotations

import json

import pytest

from gadgetstore.engine.descriptor import canonical_json
from gadgetstore.engine.gojson import go_json, go_loads, go_unmarshal, plain_loads
from gadgetstore.engine.gonumbers import format_float, json_float, parse_bool
from gadgetstore.engine.images import go_manifest_json


@pytest.mark.parametrize(("value", "as_json", "as_g", "as_g32"), [
    (0.0, "0", "0", "0"),
    (-0.0, "-0", "-0", "-0"),
    (100.0, "100", "100", "100"),
    (1e20, "100000000000000000000", "1e+20", "1e+20"),
    (1e21, "1e+21", "1e+21", "1e+21"),
    (1e-6, "0.000001", "1e-06", "1e-06"),
    (1e-7, "1e-7", "1e-07", "1e-07"),
    (123456789.0, "123456789", "1.23456789e+08", "1.2345679e+08"),
    (100000.5, "100000.5", "100000.5", "100000.5"),
    (3.14159265358979, "3.14159265358979", "3.14159265358979", "3.1415927"),
    (12345678901234567890.0, "12345678901234567000", "1.2345678901234567e+19", "1.2345679e+19"),
])
def test_floats_are_formatted_as_strconv_formats_them(value: float, as_json: str, as_g: str, as_g32: str) -> None:
    """encoding/json floatEncoder and strconv.FormatFloat(f, 'g', -1, 64/32) (ftoa.go: %e from exponent 6)."""
    assert json_float(value) == as_json
    assert format_float(value, "g") == as_g
    assert format_float(value, "g", 32) == as_g32


def test_booleans_are_read_as_strconv_parse_bool_reads_them() -> None:
    """strconv.ParseBool's twelve spellings (Go's strconv/atob.go); anything else is refused, not false."""
    for text in ("1", "t", "T", "TRUE", "true", "True"):
        assert parse_bool(text) is True
    for text in ("0", "f", "F", "FALSE", "false", "False"):
        assert parse_bool(text) is False
    for text in ("", "yes", "tRUE", " true", "2", "no"):
        with pytest.raises(ValueError, match="is not a boolean"):
            parse_bool(text)


def test_go_json_escapes_html_and_keeps_given_key_order() -> None:
    """encoding/json: <, >, & and U+2028/2029 escaped; MarshalIndent's two spaces; {} and [] when empty."""
    value = {"b": "<a&b>\u2028", "a": [1, 2.5, {}, []], "c": {"x": None}}
    assert go_json(value) == '{"b":"\\u003ca\\u0026b\\u003e\\u2028","a":[1,2.5,{},[]],"c":{"x":null}}'
    assert go_json(value, pretty=True) == (
        '{\n  "b": "\\u003ca\\u0026b\\u003e\\u2028",\n  "a": [\n    1,\n    2.5,\n    {},\n    []\n  ],\n'
        '  "c": {\n    "x": null\n  }\n}')


LONE = json.loads('"a\\ud800b\\udfffc"')
"""What json.loads makes of JSON text escaping lone surrogates, which UTF-8 cannot encode."""


@pytest.mark.parametrize("value", [{"k": LONE}, {"k": LONE, "f": 0.5}, {LONE: [LONE]}])
def test_a_lone_surrogate_from_json_text_is_u_fffd_as_go_decodes_it(value: dict[str, object]) -> None:
    """encoding/json's unquote turns a lone surrogate escape into U+FFFD, which Marshal writes as it is;
    a manifest or descriptor holding one is written, never a UnicodeEncodeError (plain and float paths)."""
    for text in (go_json(value), go_json(value, pretty=True), canonical_json(value).decode()):
        assert "a\ufffdb\ufffdc" in text and "\\u" not in text
        text.encode()
    layer = {"mediaType": "l", "digest": "sha256:bb", "size": 3, "annotations": {"k": LONE}}
    assert "a\ufffdb\ufffdc".encode() in go_manifest_json({"schemaVersion": 2, "config": {}, "layers": [layer]})


@pytest.mark.parametrize("text", ['{"a":["x\\ud800"]}', b'{"a":["x\\ud800"]}'])
def test_go_loads_reads_json_as_go_does_from_text_or_bytes(text: str | bytes) -> None:
    """The one reader of JSON from elsewhere: U+FFFD for a lone surrogate, ValueError (what every
    caller catches for bad JSON) for nesting deeper than the parser goes."""
    assert go_loads(text) == {"a": ["x\ufffd"]}
    deep = "[" * 100_000
    with pytest.raises(ValueError, match="nested too deeply"):
        go_loads(deep.encode() if isinstance(text, bytes) else deep)


@pytest.mark.parametrize("text", ['{"a":["x\\ud800"]}', b'{"a":["x\\ud800"]}'])
def test_plain_loads_keeps_what_python_reads_and_refuses_deep_nesting(text: str | bytes) -> None:
    """For JSON this program wrote (inspect's analysis cache): read back as written, lone surrogate
    included, and a forged file nested too deeply is a ValueError like other bad JSON."""
    assert plain_loads(text) == {"a": ["x\ud800"]}
    deep = "[" * 100_000
    with pytest.raises(ValueError, match="nested too deeply"):
        plain_loads(deep.encode() if isinstance(text, bytes) else deep)


def test_go_unmarshal_refuses_deep_nesting_as_bad_json() -> None:
    """--extra-info and the mounted view read JSON content with it; their bad-JSON branch handles
    ValueError, so too deep a nesting must be one."""
    assert go_unmarshal('{"b":[1],"a":null}') == {"a": None, "b": [1.0]}
    with pytest.raises(ValueError, match="nested too deeply"):
        go_unmarshal("[" * 100_000 + "]" * 100_000)
