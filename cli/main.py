"""The ``gadgetstore`` command: ``image`` verbs as in ``ig image``, plus store maintenance.

Commands are named here, with the line ``--help`` shows for each, and imported on first use (see
:mod:`.lazy`); each lives in the module of its area.
"""

from __future__ import annotations

from pathlib import Path

import click

from .context import AppContext, handle_sigterm
from .lazy import LazyGroup

_PKG = "gadgetstore.cli"

IMAGE_COMMANDS = {
    "list": (f"{_PKG}.image_offline:list_cmd", "List gadget images in the store."),
    "ls": (f"{_PKG}.image_offline:list_cmd", "List gadget images in the store."),
    "tag": (f"{_PKG}.image_offline:tag_cmd",
           "Create a tag DST that refers to the image SRC (a name, NAME@DIGEST, a digest or a 12+ digit prefix)."),
    "remove": (f"{_PKG}.image_offline:remove_cmd",
              "Remove IMAGE: untag it, and delete its blobs unless another tag still uses them."),
    "rm": (f"{_PKG}.image_offline:remove_cmd",
          "Remove IMAGE: untag it, and delete its blobs unless another tag still uses them."),
    "export": (f"{_PKG}.image_offline:export_cmd",
              "Export images to a tarball (zstd-compressed when DST_FILE ends in .tar.zst)."),
    "import": (f"{_PKG}.image_offline:import_cmd",
              "Import images from a tarball made by ``image export`` (plain or zstd; '-' is standard input)."),
    "inspect": (f"{_PKG}.inspect_cmd:inspect_cmd",
               "Inspect a gadget image: metadata, maps, programs, flowcharts and more."),
    "build": (f"{_PKG}.build_cmd:build", "Build a gadget image from PATH (default: the current directory)."),
    "pull": (f"{_PKG}.registry_cmds:pull", "Pull one or more gadget images into the store, with their signatures."),
    "push": (f"{_PKG}.registry_cmds:push",
            "Push a gadget image from the store to its registry, with its stored signatures."),
    "verify": (f"{_PKG}.sign_cmds:verify_cmd",
              "Verify the signature of IMAGE in the local store (a name, NAME@DIGEST, a digest or a 12+ digit "
              "prefix)."),
    "sign": (f"{_PKG}.sign_cmds:sign_cmd", "Sign IMAGE in the local store with a cosign-compatible signature."),
}

ROOT_COMMANDS = {
    "fsck": (f"{_PKG}.maintenance:fsck_cmd",
            "Re-hash every blob and check the journal, index.json and every reference."),
    "gc": (f"{_PKG}.maintenance:gc_cmd", "Delete blobs that no tag reaches, and unfinished ingest files."),
    "login": (f"{_PKG}.registry_cmds:login", "Log in to REGISTRY, checking the credentials there before storing them."),
    "logout": (f"{_PKG}.registry_cmds:logout", "Remove stored credentials for REGISTRY (or all of them)."),
    "serve": (f"{_PKG}.serve_cmd:serve", "Serve the store as a read-only registry until SIGINT or SIGTERM."),
    "key": (f"{_PKG}.sign_cmds:key_group", "Manage signing keys."),
    "mount": (f"{_PKG}.mount:mount_cmd",
             "Mount the store read-only at MOUNTPOINT (foreground until Ctrl-C, SIGTERM or umount)."),
    "umount": (f"{_PKG}.mount:umount_cmd", "Unmount a gadgetstore mount."),
    "version": (f"{_PKG}.version_cmd:version_cmd", "Show version."),
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
