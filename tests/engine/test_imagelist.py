"""``image list`` as ig prints it, byte for byte.

Expected bytes come from ig's code: cmd/common/image/list.go ``NewListCmd`` (short digest and age
on a terminal, raw values otherwise), pkg/oci/oci.go ``GadgetImageDesc`` (``digest,width:12,fixed``,
the other columns pkg/columns' default width 16), pkg/columns/formatter/textcolumns/scaler.go
``RecalculateWidths`` and ``GetTerminalWidth`` (width of fd 0), output.go ``buildFixedString``
(strconv.Quote escaping, ellipsis.End ``…``, left-aligned padding of every column, the last too) and
``WriteTable``. Every terminal case matches the real ig (v0.55, under ``script`` with ``stty cols W``,
on ig's own pulled store) byte for byte, with the terminal's ``\\r\\n`` for ``\\n``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gadgetstore.engine.imagelist import format_json, format_rows
from gadgetstore.engine.images import ImageRow
from gadgetstore.engine.textcolumns import Column, go_quote_inner, recalculate_widths

NOW = datetime(2026, 12, 3, tzinfo=UTC)
DIGEST = "sha256:793046c55399dec2908a34df342fcd6c5312d23d2661f107349904a3cd6cad30"
ROW = ImageRow("127.0.0.1:55841/x", "v1", DIGEST, "2023-11-14T22:13:20Z")
LONG = ImageRow("trace_open_with_a_rather_long_name", "v0.40.0-rc.1",
                "sha256:87c3ecca8d843f2e08382836cb0eff718fa5c56d786c73e2674d7e9db13a1ac7", "2026-12-02T23:00:00Z")


def test_80_columns_as_measured_with_ig() -> None:
    """22 + 1 + 22 + 1 + 12 + 1 + 21: floor(16/48 * (80 - 15)) = 21 each, the 2 left over go to the
    first two columns; the last column is padded (the measurement in captures/ig-list-tty80.raw)."""
    assert format_rows([ROW], tty=True, no_trunc=False, now=NOW, screen_width=80) == (
        "REPOSITORY             TAG                    DIGEST       CREATED              \n"
        "127.0.0.1:55841/x      v1                     793046c55399 3 years ago          \n"
    )


def test_60_columns_cut_with_an_ellipsis() -> None:
    """floor(45/3) = 15 each, nothing left over; 17 characters cut to 14 and ``…``."""
    assert format_rows([ROW, LONG], tty=True, no_trunc=False, now=NOW, screen_width=60) == (
        "REPOSITORY      TAG             DIGEST       CREATED        \n"
        "127.0.0.1:5584… v1              793046c55399 3 years ago    \n"
        "trace_open_wit… v0.40.0-rc.1    87c3ecca8d84 about an hour …\n"
    )


@pytest.mark.parametrize(("screen", "widths"), [
    (100, (29, 28, 12, 28)),  # floor(85/3) = 28, 1 left over
    (120, (35, 35, 12, 35)),  # 105/3, none left over (ig prints 35/35/12/35)
    (200, (62, 62, 12, 61)),  # floor(185/3) = 61, 2 left over
    (20, (2, 2, 12, 1)),  # floor(5/3) = 1 each, 2 left over (18 is the least ig scales to)
    (0, (16, 16, 12, 16)),  # no terminal on fd 0 (ig's GetSize(0) fails): declared widths, still cut
])
def test_widths_at_other_terminal_sizes(screen: int, widths: tuple[int, int, int, int]) -> None:
    text = format_rows([ROW, LONG], tty=True, no_trunc=False, now=NOW, screen_width=screen)
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 4
    cells = [["REPOSITORY", "TAG", "DIGEST", "CREATED"], ["127.0.0.1:55841/x", "v1", "793046c55399", "3 years ago"],
             ["trace_open_with_a_rather_long_name", "v0.40.0-rc.1", "87c3ecca8d84", "about an hour ago"]]
    for line, row in zip(lines, cells, strict=False):
        expected = " ".join((c if len(c) <= w else (c[: w - 1] + "…" if w > 1 else "…")).ljust(w)
                            for c, w in zip(row, widths, strict=True))
        assert line == expected
    if screen >= 18:
        assert {len(line) for line in lines[:-1]} == {screen}


def test_the_20_column_table_is_igs() -> None:
    """ig at 20 columns: every column but the fixed digest shrinks to almost nothing."""
    assert format_rows([ROW], tty=True, no_trunc=False, now=NOW, screen_width=20) == (
        "R… T… DIGEST       …\n"
        "1… v1 793046c55399 …\n"
    )


def test_recalculate_widths_matches_scaler_go() -> None:
    columns = [Column("a"), Column("b"), Column("c", 12, fixed=True), Column("d")]
    assert recalculate_widths(columns, 80) == [22, 22, 12, 21]
    assert recalculate_widths(columns, 18) == [1, 1, 12, 1]
    assert recalculate_widths([Column("a", 10), Column("b", 30)], 41) == [10, 30]  # 1/4 and 3/4 of 40
    assert recalculate_widths([Column("x", 5, fixed=True)], 80) == [5]  # nothing to share with


@pytest.mark.parametrize(("no_trunc", "tty"), [(False, False), (True, True), (True, False)])
def test_piped_and_no_trunc_are_raw_and_unpadded(no_trunc: bool, tty: bool) -> None:
    """Unchanged (captures/ig-list.stdout, ig-list-no-trunc.stdout): values one space apart."""
    assert format_rows([ROW], tty=tty, no_trunc=no_trunc, now=NOW, screen_width=80) == (
        f"REPOSITORY TAG DIGEST CREATED\n127.0.0.1:55841/x v1 {DIGEST} 2023-11-14T22:13:20Z\n"
    )


def test_json_has_no_trailing_newline_and_go_escaping() -> None:
    """captures/ig-list-json.stdout; json.Marshal escapes <, > and &."""
    assert format_json([ROW], pretty=False) == (
        f'[{{"Repository":"127.0.0.1:55841/x","Tag":"v1","Digest":"{DIGEST}","Created":"2023-11-14T22:13:20Z"}}]')
    assert format_json([ImageRow("<none>", "<none>", DIGEST, "")], pretty=True) == (
        f'[\n  {{\n    "Repository": "\\u003cnone\\u003e",\n    "Tag": "\\u003cnone\\u003e",\n'
        f'    "Digest": "{DIGEST}",\n    "Created": ""\n  }}\n]')
    assert format_json([], pretty=True) == "[]"


@pytest.mark.parametrize(("raw", "quoted"), [
    ("plain text", "plain text"),
    ('say "hi" \\ bye', 'say \\"hi\\" \\\\ bye'),
    ("tab\there\nnl\r\a\b\f\v", "tab\\there\\nnl\\r\\a\\b\\f\\v"),
    ("\x00\x1b\x7f", "\\x00\\x1b\\x7f"),
    ("é€✓", "é€✓"),  # printable: kept
    ("\u00a0\u200b\u2028", "\\u00a0\\u200b\\u2028"),  # spaces other than U+0020 and format characters
    ("\U000e0001\U0001f600", "\\U000e0001\U0001f600"),  # a tag character escaped, an emoji (So) kept
])
def test_cells_are_escaped_as_strconv_quote(raw: str, quoted: str) -> None:
    assert go_quote_inner(raw) == quoted
