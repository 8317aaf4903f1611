"""``gadgetstore image build [PATH]``: compile a gadget directory and store it as an ig image."""

from __future__ import annotations

import os
from pathlib import Path

import click

from gadgetstore.engine.build import BuildRequest, build_image

from .context import AppContext, pass_app, user_errors


@click.command("build")
@click.argument("path", required=False, default=".", type=click.Path(path_type=Path))
@click.option("-t", "--tag", "image", default="", help="Name for the built image (format name:tag).")
@click.option(
    "-f", "--file", "build_file", type=click.Path(path_type=Path), default=None,
    help="Path to build.yaml (default: PATH/build.yaml; '-' is stdin).",
)
@click.option(
    "-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder to keep the generated files in (default: a temporary folder).",
)
@click.option(
    "-l", "--local", is_flag=True,
    help="Accepted for ig compatibility; gadgetstore always builds with the local clang.",
)
@pass_app
@user_errors
def build(
    app: AppContext, path: Path, image: str, build_file: Path | None, output_dir: Path | None, local: bool
) -> None:
    """Build a gadget image from PATH (default: the current directory).

    Set SOURCE_DATE_EPOCH for a reproducible image digest.
    """
    del local  # always local: there is no builder container
    request = BuildRequest(
        gadget_dir=path,
        build_file=build_file,
        output_dir=output_dir,
        source_date_epoch=os.environ.get("SOURCE_DATE_EPOCH"),
    )
    built = build_image(app.store, request, image)
    # ig prints this with cobra's cmd.Printf, which goes to stderr.
    click.echo(f"Successfully built {built}", err=True)
