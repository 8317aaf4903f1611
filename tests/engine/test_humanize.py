"""Durations and rates as people write them (``--timeout``, ``registries.toml``), parsed and shown again."""

from __future__ import annotations

import pytest

from gadgetstore.engine.humanize import format_duration, format_rate, parse_duration, parse_rate


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1.5m", 90.0),
    ("45", 45.0), ("0.25", 0.25), (" 2m ", 120.0), ("1H", 3600.0),
])
def test_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5s", "5x", "s", "1h-30m", "inf", "nan", "1e3", "5 m", "m5"])
def test_bad_durations_are_refused_with_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "shown"), [(90, "1m30s"), (300, "5m"), (3600, "1h"), (5400, "1h30m"),
                                                (0.5, "0.5s"), (45, "45s"), (3661, "1h1m1s")])
def test_durations_are_shown_short(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
    assert parse_duration(shown) == seconds  # what is shown reads back


@pytest.mark.parametrize(("text", "rate"), [
    ("1KiB/s", 1024.0), ("1 KiB/s", 1024.0), ("10kB/s", 10_000.0), ("2MiB/s", 2 * 1024 * 1024.0),
    ("1GB/s", 1e9), ("512", 512.0), ("512B/s", 512.0), ("0", 0.0), ("1.5kib", 1536.0),
])
def test_rates_parse_to_bytes_per_second(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "-1", "fast", "1 KiB/min", "1TiB/s", "KiB/s"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate(text)


def test_rates_are_shown_in_binary_units() -> None:
    assert [format_rate(r) for r in (0, 512, 1024, 1536, 3 * 1024 * 1024, 5 * 1024**3)] == [
        "0 B/s", "512 B/s", "1 KiB/s", "1.5 KiB/s", "3 MiB/s", "5 GiB/s"]
