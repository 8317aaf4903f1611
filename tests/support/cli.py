"""Running the gadgetstore CLI for tests: in-process (click's runner), or as a child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from gadgetstore.cli.main import cli


def run_cli(*args: str, input: str | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); a traceback in the output or an uncaught exception fails the test."""
    result = CliRunner().invoke(cli, list(args), input=input)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def run_in_store(store: Path, *args: str) -> tuple[int, str, str]:
    """:func:`run_cli` on the store at ``store``."""
    return run_cli("--store", str(store), *args)


CLI = [sys.executable, "-m", "gadgetstore.cli.main"]


def start_cli(store: Path, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """The real CLI in a child process: signals, exit codes and stderr exactly as a user meets them."""
    return subprocess.Popen([*CLI, "--store", str(store), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, **popen)
