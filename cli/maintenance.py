"""``fsck`` and ``gc``: checking and tidying the store."""

from __future__ import annotations

import sys

import click

from gadgetstore.engine.fsck import fsck, repair_root
from gadgetstore.engine.removal import prune_untagged
from gadgetstore.engine.store import Store

from .context import AppContext, pass_app, user_errors
from .deadline import Duration


@click.command("fsck")
@click.option("--repair", is_flag=True, help="First repair what fsck finds: rebuild a damaged journal, move damaged "
              "blobs to quarantine/, drop tags whose blobs are missing, rewrite index.json.")
@pass_app
@user_errors
def fsck_cmd(app: AppContext, repair: bool) -> None:
    """Re-hash every blob and check the journal, index.json and every reference."""
    if repair:
        for action in repair_root(app.root):
            click.echo(f"repaired: {action}")
    report = fsck(Store.open(app.root, readonly=True, allow_damage=True))
    for note in report.notes:
        click.echo(f"note: {note}")
    for problem in report.problems:
        click.echo(f"damaged: {problem}")
    click.echo(
        f"checked {report.blobs_checked} blobs ({report.bytes_checked} bytes) and "
        f"{report.references_checked} references: "
        + ("no problems found" if report.clean else f"{len(report.problems)} problem(s)")
    )
    if not report.clean:
        sys.exit(1)


@click.command("gc")
@click.option("--untagged", is_flag=True,
              help="Also delete untagged images (untagged builds, pulls by digest: 'image list --all' "
                   "shows them as <none>) and their signatures.")
@click.option("--grace", type=Duration(allow_zero=True), metavar="DURATION",
              help="Keep unreferenced blobs younger than DURATION (0 for none). Default: 1h in a store "
                   "shared with ig, whose pulls write blobs before naming them; 0 in gadgetstore's own.")
@pass_app
@user_errors
def gc_cmd(app: AppContext, untagged: bool, grace: float | None) -> None:
    """Delete blobs that no tag reaches, and unfinished ingest files."""
    if untagged:
        images, report = prune_untagged(app.store(), grace)
        click.echo(f"removed {images} untagged images")
    else:
        report = app.store().gc(grace)
    click.echo(
        f"removed {len(report.removed_blobs)} blobs ({report.removed_bytes} bytes) "
        f"and {report.removed_ingest_files} ingest files"
    )
    if report.kept_young:
        click.echo(f"kept {report.kept_young} unreferenced blob(s) younger than the grace period "
                   "(another tool may be about to name them)")
