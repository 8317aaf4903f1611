"""Durations and rates for people: printed as Docker's go-units ``HumanDuration`` words (which ig
lower-cases) or in short form (``1m30s``, ``1 KiB/s``), and parsed from flags and config files."""

from __future__ import annotations

import math
import re

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION_RE = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h))+")
_DURATION_PART_RE = re.compile(rf"({_NUMBER})(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_RE = re.compile(rf"({_NUMBER})\s*(?:([kmg])(i)?)?b?(?:/s)?", re.IGNORECASE)
_RATE_UNITS = {"": 0, "k": 1, "m": 2, "g": 3}


def human_duration(seconds_total: float) -> str:
    seconds = int(seconds_total)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = int(seconds_total / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = math.floor(seconds_total / 3600 + 0.5)  # Go math.Round: halves away from zero
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds_total / 3600) // 24 // 365} years"


def parse_duration(text: str, allow_zero: bool = False) -> float:
    """Seconds in ``text``: Go-style ``90s``, ``5m``, ``1h30m``, ``500ms``, or a plain number of seconds.

    Raises ValueError (the reason, for a one-line message) unless it is a positive duration, or
    zero with ``allow_zero``."""
    value = text.strip().lower()
    if re.fullmatch(_NUMBER, value):
        seconds = float(value)
    elif _DURATION_RE.fullmatch(value):
        seconds = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART_RE.findall(value))
    else:
        raise ValueError(f"{text!r} is not a duration (such as 90s, 5m, 1h30m or a number of seconds)")
    if not (seconds > 0 or (allow_zero and seconds == 0)):
        raise ValueError(f"{text!r}: a duration must be more than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """``90`` as ``1m30s``, ``0.5`` as ``0.5s``, ``3600`` as ``1h``: how a parsed duration is shown again."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{int(hours)}h" if hours else "", f"{int(minutes)}m" if minutes else "",
             f"{round(secs, 3):g}s" if secs or not (hours or minutes) else ""]
    return "".join(parts)


def parse_rate(text: str) -> float:
    """Bytes per second in ``text``: ``1KiB/s``, ``10 kB/s``, ``2MiB/s`` or a plain number of bytes
    per second; ``k``/``M``/``G`` are powers of 1000, ``Ki``/``Mi``/``Gi`` of 1024. Zero is allowed."""
    match = _RATE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a rate (such as 1KiB/s, 10kB/s or a number of bytes per second)")
    number, prefix, binary = match.groups()
    return float(number) * (1024 if binary else 1000) ** _RATE_UNITS[(prefix or "").lower()]


def format_rate(bytes_per_second: float) -> str:
    """``1024`` as ``1 KiB/s``: binary units, as the default floor is written."""
    value = bytes_per_second
    for unit in ("B/s", "KiB/s", "MiB/s"):
        if value < 1024:
            return f"{round(value, 2):g} {unit}"
        value /= 1024
    return f"{round(value, 2):g} GiB/s"


def human_bytes(n: int) -> str:
    """Decimal units as Docker prints sizes: ``950 B``, ``1.2 kB``, ``176.5 MB``."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"
