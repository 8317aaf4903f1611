"""go-yaml v2's scalars (resolve.go): which tag and value a plain scalar has, as YAML 1.1 says."""

from __future__ import annotations

import math
import re
from calendar import monthrange
from typing import Any

STR = "tag:yaml.org,2002:str"
BOOL = "tag:yaml.org,2002:bool"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
NULL = "tag:yaml.org,2002:null"
TIMESTAMP = "tag:yaml.org,2002:timestamp"
MERGE = "tag:yaml.org,2002:merge"
BINARY = "tag:yaml.org,2002:binary"
_RESOLVABLE = {"", STR, BOOL, INT, FLOAT, NULL, TIMESTAMP}


class GoYamlError(ValueError):
    """What go-yaml or sigs.k8s.io/yaml would fail with; the message is theirs, shortened.

    Internal: a codec error like ``json``'s ``ValueError``; ``image inspect``, the only user, wraps it in
    its own :class:`~gadgetstore.cli.inspect_cmd.InspectError` with what it was doing."""


_HINT = {**dict.fromkeys("+-", "S"), **dict.fromkeys("0123456789", "D"), **dict.fromkeys("yYnNtTfFoO~", "M"),
         ".": "."}
_RESOLVE_MAP: dict[str, tuple[str, Any]] = {}
for _values, _tag, _value in (
    (("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), BOOL, True),
    (("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), BOOL, False),
    (("", "~", "null", "Null", "NULL"), NULL, None),
    ((".nan", ".NaN", ".NAN"), FLOAT, math.nan),
    ((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), FLOAT, math.inf),
    (("-.inf", "-.Inf", "-.INF"), FLOAT, -math.inf),
    (("<<",), MERGE, "<<"),
):
    for _text in _values:
        _RESOLVE_MAP[_text] = (_tag, _value)

_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_DOT_FLOAT = re.compile(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?")
BASE60_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64_MAX = (1 << 64) - 1


def _go_parse_int(text: str, unsigned: bool) -> int | None:
    """``strconv.ParseInt(text, 0, 64)`` (``ParseUint`` with ``unsigned``); None on any error."""
    sign = 1
    body = text
    if not unsigned and body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    base = 10
    lower = body[:2].lower()
    if lower in ("0x", "0o", "0b") and len(body) >= 3:
        base = {"0x": 16, "0o": 8, "0b": 2}[lower]
        body = body[2:]
    elif body.startswith("0") and len(body) > 1:
        base, body = 8, body[1:]
    if not body:
        return None
    digits = "0123456789abcdef"[:base]
    if any(ch not in digits for ch in body.lower()):
        return None
    value = sign * int(body, base)
    if unsigned:
        return value if value <= _UINT64_MAX else None
    return value if _INT64[0] <= value <= _INT64[1] else None


def _go_parse_float(text: str) -> float | None:
    """``strconv.ParseFloat(text, 64)`` for the decimal forms go-yaml passes it; None on error (range too)."""
    value = float(text)
    return None if math.isinf(value) else value


_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9][0-9]?)-([0-9][0-9]?)"
    r"(?:(?:[Tt]([0-9][0-9]?):([0-9][0-9]?):([0-9][0-9]?)(?:[.,][0-9]+)?(?:Z|([-+])([0-9]{2}):([0-9]{2})))"
    r"|(?: ([0-9][0-9]?):([0-9][0-9]?):([0-9][0-9]?)(?:[.,][0-9]+)?))?"
)


def is_timestamp(text: str) -> bool:
    """``parseTimestamp``: the four layouts go-yaml tries with Go's ``time.Parse``, ranges checked."""
    match = _TIMESTAMP_RE.fullmatch(text)
    if match is None:
        return False
    year, month, day = int(match[1]), int(match[2]), int(match[3])
    if not 1 <= month <= 12 or not 1 <= day <= monthrange(year, month)[1]:
        return False
    clock = match[4] or match[10]
    if clock is not None:
        hour, minute, second = (int(match[i]) for i in ((4, 5, 6) if match[4] else (10, 11, 12)))
        if hour >= 24 or minute >= 60 or second >= 60:
            return False
        if match[7] and (int(match[8]) > 24 or int(match[9]) > 60):
            return False
    return True


def resolve(tag: str, text: str) -> tuple[str, Any]:
    """``resolve(tag, in)``: the tag and value go-yaml gives a scalar; raises for a tag it cannot take."""
    if tag not in _RESOLVABLE:
        return tag, text
    rtag, value = _resolve(tag, text)
    if tag in ("", rtag, STR, BINARY):
        return rtag, value
    if tag == FLOAT and rtag == INT:
        return FLOAT, float(value)
    raise GoYamlError(f"yaml: cannot decode {_short(rtag)} `{text}` as a {_short(tag)}")


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


def _resolve(tag: str, text: str) -> tuple[str, Any]:
    hint = _HINT.get(text[0]) if text else "N"
    if hint is None or tag in (STR, BINARY):
        return STR, text
    if text in _RESOLVE_MAP:
        return _RESOLVE_MAP[text]
    if hint == "." and _GO_DOT_FLOAT.fullmatch(text):
        value = _go_parse_float(text)
        if value is not None:
            return FLOAT, value
    if hint in ("D", "S"):
        if tag in ("", TIMESTAMP) and text[:4].isdigit() and text[4:5] == "-" and is_timestamp(text):
            return TIMESTAMP, text
        plain = text.replace("_", "")
        for unsigned in (False, True):
            number = _go_parse_int(plain, unsigned) if plain else None
            if number is not None:
                return INT, number
        if _YAML_STYLE_FLOAT.fullmatch(plain):
            value = _go_parse_float(plain)
            if value is not None:
                return FLOAT, value
        # the 0b and -0b fallbacks of resolve.go only see what ParseInt(plain, 0, 64) refused already
    return STR, text


