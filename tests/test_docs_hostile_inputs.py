"""docs/hostile-inputs.md names only tests that exist: every test id in its tables is one pytest collects.

The document tells a reader to run a row as ``pytest 'ID'``; a test renamed, moved or removed would
leave a row that runs nothing, so the ids are checked against one ``pytest --collect-only`` of the
files the document names.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DOC = PROJECT / "docs" / "hostile-inputs.md"
CODE_SPAN = re.compile(r"`([^`]*)`")


def split_cells(row: str) -> list[str]:
    """The cells of a Markdown table row, as GitHub splits them: at every ``|`` not written ``\\|``
    (a code span does not protect one)."""
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def ids_in_cell(cell: str) -> list[str]:
    """The test ids of a row's test cell: ``tests/…::name[case]`` spans, and ``[case]`` spans that
    name another case of the test before them."""
    ids: list[str] = []
    function = None
    for span in CODE_SPAN.findall(cell):
        if span.startswith("tests/"):
            ids.append(span)
            function = span.split("[", 1)[0]
        elif span.startswith("[") and span.endswith("]") and function is not None:
            ids.append(function + span)
    return ids


def documented_ids(text: str) -> list[tuple[int, str]]:
    """``(line number, test id)`` for every id in the test column of the document's tables."""
    found: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("|") or re.fullmatch(r"\|[-| ]+\|", line.strip()):
            continue
        cells = split_cells(line)
        if cells[-1] == "test":
            continue  # a header row
        assert len(cells) == 4, f"docs/hostile-inputs.md:{number}: {len(cells)} cells, not input, sees, holds, test"
        ids = ids_in_cell(cells[-1])
        assert ids, f"docs/hostile-inputs.md:{number}: a row without a test id in its last column"
        found.extend((number, test_id) for test_id in ids)
    return found


def collected_ids(files: set[str]) -> set[str]:
    """The node ids pytest collects from ``files``; nothing runs, so asserts need not be rewritten
    (which is most of the time a collection takes)."""
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--assert=plain", *sorted(files)],
                            cwd=PROJECT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"pytest could not collect the files docs/hostile-inputs.md names:\n" \
                                   f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return {line for line in result.stdout.splitlines() if "::" in line}


def is_collected(test_id: str, collected: set[str]) -> bool:
    """An id without ``[case]`` names every case of a parametrized test, as ``pytest 'ID'`` runs them."""
    return test_id in collected or any(node.startswith(test_id + "[") for node in collected)


def test_ids_are_read_from_the_test_column() -> None:
    row = ("| a `\\|` in a message | `Error: a \\| b` | unchanged | "
           "`tests/a/test_x.py::test_y[one]`, `[two]`, `tests/a/test_z.py::test_w` |")
    assert split_cells(row)[:2] == ["a `|` in a message", "`Error: a | b`"]
    assert documented_ids(row) == [(1, "tests/a/test_x.py::test_y[one]"), (1, "tests/a/test_x.py::test_y[two]"),
                                   (1, "tests/a/test_z.py::test_w")]
    collected = {"tests/a/test_x.py::test_y[one]", "tests/a/test_z.py::test_w[1]"}
    assert is_collected("tests/a/test_z.py::test_w", collected)
    assert not is_collected("tests/a/test_x.py::test_y[two]", collected)
    assert not is_collected("tests/a/test_x.py::test_", collected)


def test_every_documented_test_id_is_collected() -> None:
    documented = documented_ids(DOC.read_text())
    assert len(documented) > 100
    files = {test_id.split("::", 1)[0] for _, test_id in documented}
    absent_files = sorted(path for path in files if not (PROJECT / path).is_file())
    assert not absent_files, f"docs/hostile-inputs.md names test files that do not exist: {absent_files}"
    collected = collected_ids(files)
    missing = [f"line {number}: {test_id}" for number, test_id in documented if not is_collected(test_id, collected)]
    assert not missing, "docs/hostile-inputs.md names tests pytest does not collect:\n" + "\n".join(missing)
