import pytest

from gadgetstore.engine.asciidigits import parse_decimal


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("007", 7), ("65535", 65535)])
def test_ascii_digits_are_numbers(text: str, value: int) -> None:
    assert parse_decimal(text) == value


@pytest.mark.parametrize("text", ["", " 1", "1 ", "+1", "-1", "1_000", "\u00b2", "\u0663", "１", "1\n"])
def test_anything_else_is_not(text: str) -> None:
    assert parse_decimal(text) is None
