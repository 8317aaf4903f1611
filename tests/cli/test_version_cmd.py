"""``gadgetstore version`` (the twin of ``ig version``) and click's ``--version``."""

from __future__ import annotations

from click.testing import CliRunner

from gadgetstore.cli.main import cli
from gadgetstore.engine.version import package_version


def test_version_prints_as_ig_version() -> None:
    """cmd/common/version.go NewVersionCmd: ``fmt.Printf("v%s\\n", version.Version().String())`` on
    stdout, nothing else (the user agent is a debug log)."""
    result = CliRunner().invoke(cli, ["version"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"v{package_version()}\n", "")


def test_click_version_option() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"gadgetstore, version {package_version()}\n")
