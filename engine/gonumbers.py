"""Numbers as Go prints them: ``strconv.FormatFloat`` (shortest, ``'f'``/``'e'``/``'g'``) and
``encoding/json``'s float encoding. ig's outputs go through both (JSON from encoding/json, YAML
from go-yaml, which formats floats with ``'g'``). Also ``strconv.ParseBool``, which reads ig's
boolean flags and settings."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

_PARSE_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
               "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def parse_bool(text: str) -> bool:
    """``strconv.ParseBool``: its twelve spellings, and a ValueError for anything else."""
    try:
        return _PARSE_BOOL[text]
    except KeyError:
        raise ValueError(f"{text!r} is not a boolean (true, false, 1, 0, t, f, TRUE, False, ...)") from None


def _shortest_digits(value: float, bits: int) -> tuple[str, int]:
    """(digits, dp) with value = 0.<digits> × 10^dp: the shortest digits that read back as the same
    float64 (``bits`` 64) or float32; ``value`` is not negative."""
    if bits == 64:
        text = repr(value)
    else:
        text = next(t for p in range(1, 10) if _float32(float(t := f"{value:.{p - 1}e}")) == value)
    _, digit_tuple, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if not digits:
        return "0", 1
    trimmed = digits.rstrip("0")
    return trimmed, len(digits) + exponent


def _fmt_e(neg: bool, digits: str, dp: int, prec: int, letter: str = "e") -> str:
    out = "-" if neg else ""
    out += digits[0]
    if prec > 0:
        out += "." + digits[1 : 1 + prec].ljust(prec, "0")
    exp = 0 if digits == "0" else dp - 1
    sign = "-" if exp < 0 else "+"
    exp = abs(exp)
    return f"{out}{letter}{sign}{exp:02d}"


def _fmt_f(neg: bool, digits: str, dp: int, prec: int) -> str:
    out = "-" if neg else ""
    if dp > 0:
        out += digits[:dp].ljust(dp, "0")
    else:
        out += "0"
    if prec > 0:
        frac = "".join(digits[dp + i] if 0 <= dp + i < len(digits) else "0" for i in range(prec))
        out += "." + frac
    return out


def _float32(value: float) -> float:
    """``float32(value)``: rounded to single precision, infinite beyond its range."""
    try:
        narrow: float = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)
    return narrow


def format_float(value: float, fmt: str, bits: int = 64) -> str:
    """``strconv.FormatFloat(value, fmt, -1, bits)`` for fmt ``'e'``, ``'f'`` or ``'g'``."""
    if bits == 32:
        value = _float32(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    neg = math.copysign(1.0, value) < 0
    digits, dp = _shortest_digits(abs(value), bits)
    nd = len(digits)
    if fmt == "e":
        return _fmt_e(neg, digits, dp, nd - 1)
    if fmt == "f":
        return _fmt_f(neg, digits, dp, max(nd - dp, 0))
    exp = dp - 1
    if digits == "0":
        exp = 0
    if exp < -4 or exp >= 6:  # ftoa.go: shortest %g decides with precision 6
        return _fmt_e(neg, digits, dp, nd - 1)
    return _fmt_f(neg, digits, dp, max(nd - dp, 0))


def json_float(value: float) -> str:
    """encoding/json's float64: ``'f'``, or ``'e'`` below 1e-6 and from 1e21, ``e-07`` written ``e-7``."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {format_float(value, 'g')}")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = format_float(value, "e")
        if len(text) >= 4 and text[-4] == "e" and text[-3] == "-" and text[-2] == "0":
            text = text[:-2] + text[-1]
        return text
    return format_float(value, "f")
