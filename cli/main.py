"""The ``gadgetstore`` command: ``image`` verbs as in ``ig image``, plus store maintenance."""

from __future__ import annotations

from pathlib import Path

import click

# Command modules: add yours to this import and one register line below.
from . import build_cmd, image_offline, inspect_cmd, maintenance, mount, registry_cmds, serve_cmd, sign_cmds
from .context import AppContext


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    "store_root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GADGETSTORE_ROOT",
    help="Store directory (default: /var/lib/gadgetstore as root, else $XDG_DATA_HOME/gadgetstore).",
)
@click.pass_context
def cli(ctx: click.Context, store_root: Path | None) -> None:
    """Manage gadget images in a content-addressed store and browse them through FUSE."""
    ctx.obj = AppContext(store_root=store_root)


@cli.group()
def image() -> None:
    """Manage gadget images."""


image_offline.register(image)
inspect_cmd.register(image)
maintenance.register(cli)
# Command modules of the other areas register here, one line each.
build_cmd.register(image)
registry_cmds.register(cli, image)
serve_cmd.register(cli)
sign_cmds.register(cli, image)
mount.register(cli)


def main() -> None:
    cli(prog_name="gadgetstore")


if __name__ == "__main__":
    main()
