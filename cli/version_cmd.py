"""``gadgetstore version``: the twin of ``ig version`` (cmd/common/version.go NewVersionCmd)."""

from __future__ import annotations

import click

from gadgetstore.engine.version import ig_version_line, package_version


@click.command("version")
def version_cmd() -> None:
    """Show version."""
    click.echo(ig_version_line(package_version()))
