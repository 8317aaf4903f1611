"""``image list|tag|remove|export|import``: the verbs that need no network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gadgetstore.engine import reference
from gadgetstore.engine.archive import export_images, import_archive
from gadgetstore.engine.imagelist import format_json, format_rows
from gadgetstore.engine.images import list_images
from gadgetstore.engine.removal import remove_reference
from gadgetstore.engine.resolve import resolve
from gadgetstore.engine.userpath import output_name

from .context import AppContext, pass_app, user_errors
from .output import IMPORT_OUTPUTS, LIST_OUTPUTS, output_option


@click.command("list")
@click.option("--no-trunc", is_flag=True, help="Don't truncate digests and show raw creation times.")
@click.option("-a", "--all", "all_", is_flag=True,
              help="Also list untagged images (untagged builds, pulls by digest) as <none> <none>.")
@output_option(LIST_OUTPUTS, "columns")
@pass_app
@user_errors
def list_cmd(app: AppContext, no_trunc: bool, all_: bool, output: str) -> None:
    """List gadget images in the store."""
    rows, warnings = list_images(app.store(), untagged=all_)
    for warning in warnings:
        click.echo(f"WARN: {warning}", err=True)
    if output == "columns":
        click.echo(format_rows(rows, sys.stdout.isatty(), no_trunc), nl=False)
    else:
        click.echo(format_json(rows, pretty=output == "jsonpretty"), nl=False)


@click.command("tag")
@click.argument("src")
@click.argument("dst")
@pass_app
@user_errors
def tag_cmd(app: AppContext, src: str, dst: str) -> None:
    """Create a tag DST that refers to the image SRC (a name, NAME@DIGEST, a digest or a 12+ digit prefix)."""
    dst_ref = reference.normalize(dst)
    if dst_ref.digest is not None:
        raise click.UsageError("the destination must be a tag, not a digest")
    store = app.store()
    with store.transaction(f"the tag {dst_ref} was recorded") as txn:
        desc = resolve(store, src).descriptor
        txn.tag(str(dst_ref), desc)
    click.echo(f"Successfully tagged with {dst_ref.repository}:{dst_ref.tag_or_latest}@{desc.digest}", err=True)


@click.command("remove")
@click.argument("image")
@pass_app
@user_errors
def remove_cmd(app: AppContext, image: str) -> None:
    """Remove IMAGE: untag it, and delete its blobs unless another tag still uses them.

    IMAGE may be a digest (sha256:..., a prefix of 12+ hex digits, NAME@sha256:...): an untagged
    image is deleted, an image with one tag loses it; an image with several tags is refused.
    """
    remove_reference(app.store(), image)
    click.echo(f"Successfully removed {image}", err=True)


@click.command("export")
@click.argument("images", nargs=-1, required=True)
@click.argument("dst_file", type=click.Path())
@pass_app
@user_errors
def export_cmd(app: AppContext, images: tuple[str, ...], dst_file: str) -> None:
    """Export images to a tarball (zstd-compressed when DST_FILE ends in .tar.zst).

    An image named by its digest (sha256:..., NAME@sha256:...) is exported untagged.

    DST_FILE is written as tar -f writes it: '-' is standard output, a device or pipe is written
    into, a symlink is followed, and a regular file appears only once complete.
    """
    export_images(app.store(), list(images), Path(dst_file))
    click.echo(f"Successfully exported images to {output_name(dst_file)}", err=True)  # as typed, as ig says it


@click.command("import")
@click.argument("src_file", type=click.Path(path_type=Path))
@output_option(IMPORT_OUTPUTS, "")
@pass_app
@user_errors
def import_cmd(app: AppContext, src_file: Path, output: str) -> None:
    """Import images from a tarball made by ``image export`` (plain or zstd; '-' is standard input)."""
    refs = import_archive(app.store(), src_file)
    if output:
        click.echo(json.dumps(refs, indent=2 if output == "jsonpretty" else None))
        return
    click.echo("Successfully imported images:")
    for ref in refs:
        click.echo(f"  {ref}")
