"""The ``gadgetstore`` command: ``image`` verbs as in ``ig image``, plus store maintenance.

Commands are named here and imported on first use (see :mod:`.lazy`); each lives in the module
of its area.
"""

from __future__ import annotations

from pathlib import Path

import click

from .context import AppContext, handle_sigterm
from .lazy import LazyGroup

_PKG = "gadgetstore.cli"

IMAGE_COMMANDS = {
    "list": f"{_PKG}.image_offline:list_cmd",
    "ls": f"{_PKG}.image_offline:list_cmd",
    "tag": f"{_PKG}.image_offline:tag_cmd",
    "remove": f"{_PKG}.image_offline:remove_cmd",
    "rm": f"{_PKG}.image_offline:remove_cmd",
    "export": f"{_PKG}.image_offline:export_cmd",
    "import": f"{_PKG}.image_offline:import_cmd",
    "inspect": f"{_PKG}.inspect_cmd:inspect_cmd",
    "build": f"{_PKG}.build_cmd:build",
    "pull": f"{_PKG}.registry_cmds:pull",
    "push": f"{_PKG}.registry_cmds:push",
    "verify": f"{_PKG}.sign_cmds:verify_cmd",
    "sign": f"{_PKG}.sign_cmds:sign_cmd",
}

ROOT_COMMANDS = {
    "fsck": f"{_PKG}.maintenance:fsck_cmd",
    "gc": f"{_PKG}.maintenance:gc_cmd",
    "login": f"{_PKG}.registry_cmds:login",
    "logout": f"{_PKG}.registry_cmds:logout",
    "serve": f"{_PKG}.serve_cmd:serve",
    "key": f"{_PKG}.sign_cmds:key_group",
    "mount": f"{_PKG}.mount:mount_cmd",
    "umount": f"{_PKG}.mount:umount_cmd",
    "version": f"{_PKG}.version_cmd:version_cmd",
}


@click.group(cls=LazyGroup, lazy_commands=ROOT_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    "store_root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GADGETSTORE_ROOT",
    help="Store directory (default: /var/lib/gadgetstore as root, else $XDG_DATA_HOME/gadgetstore). "
         "ig's own store, /var/lib/ig/oci-store, is shared with ig by ig's rules.",
)
@click.version_option(package_name="gadgetstore", prog_name="gadgetstore")
@click.pass_context
def cli(ctx: click.Context, store_root: Path | None) -> None:
    """Manage gadget images in a content-addressed store and browse them through FUSE."""
    ctx.obj = AppContext(store_root=store_root)


@cli.group(cls=LazyGroup, lazy_commands=IMAGE_COMMANDS)
def image() -> None:
    """Manage gadget images."""


def main() -> None:
    handle_sigterm()
    cli(prog_name="gadgetstore")


if __name__ == "__main__":
    main()
