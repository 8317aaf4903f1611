"""Checks against a local Inspektor Gadget checkout and a built ``ig``, outside ``make test``.

This directory is outside pytest's ``testpaths``. Without ``IG_SOURCE`` (an ig checkout) the gadget
builds and data sources are not collected (``make test-ig-gadgets``); without ``IG`` (a built ``ig``)
the store shared with ig is not (``make test-ig``). Optional: ``IG_LIBBPF_HEADERS`` (a directory
holding the ``bpf/`` headers of the libbpf ig's builder image ships, 1.3) for the by-hand ig builder
commands, ``IG_CLANG`` (default ``clang-19``) and ``IG_RESULTS_TABLE`` (a file to write the results
table to).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.tempdirs import enter_session_root, leave_session_root
from tests_ig.results import RESULTS, results_table

IG_SOURCE = os.environ.get("IG_SOURCE", "")
"""An ig checkout: the gadget builds and data sources are checked against it."""
IG_BINARY = os.environ.get("IG", "")
"""A built ``ig``: the store shared with it is checked (``make test-ig``)."""

collect_ignore = [*([] if IG_SOURCE else ["test_ig_gadgets.py", "test_datasources_ig.py"]),
                  *([] if IG_BINARY else ["test_store_sharing.py"])]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """tmp_path and the builds' temporary files under one directory, removed at the end (as in tests/)."""
    enter_session_root(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    leave_session_root(config)


def pytest_report_header() -> str:
    if not IG_SOURCE:
        return "ig gadgets: IG_SOURCE is not set, nothing to build (make test-ig-gadgets IG_SOURCE=/path/to/ig)"
    return f"ig gadgets: {IG_SOURCE}; libbpf for ig's commands: {os.environ.get('IG_LIBBPF_HEADERS') or 'installed'}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    table = results_table()
    terminalreporter.write_sep("=", "ig gadgets built by gadgetstore")
    terminalreporter.write_line(table)
    target = os.environ.get("IG_RESULTS_TABLE")
    if target:
        Path(target).write_text(table + "\n")
