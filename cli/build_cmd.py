"""``gadgetstore image build [PATH]``: compile a gadget directory and store it as an ig image."""

from __future__ import annotations

import os
from pathlib import Path

import click

from gadgetstore.engine.build import BuildRequest, build_image

from .context import AppContext, pass_app, user_errors


def _log_to_stderr(line: str) -> None:
    click.echo(line, err=True)


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
    "--include", "include_dirs", multiple=True, type=click.Path(path_type=Path),
    help="A directory in /usr/include's role: clang gets -I DIR -I DIR/gadget/<arch>/ (repeatable; "
         "searched before the Inspektor Gadget tree).",
)
@click.option("--clang", "clang", default=None, help="The clang to use (default: the newest clang-<N> in PATH).")
@click.option("--go", "go", default=None, help="The go to build Go wasm modules with (default: go in PATH).")
@click.option(
    "--cargo", "cargo", default=None, help="The cargo to build Rust wasm modules with (default: cargo in PATH)."
)
@click.option("-v", "--verbose", is_flag=True, help="Print the tools, header directories and commands used.")
@click.option(
    "-l", "--local", is_flag=True,
    help="Accepted for ig compatibility; gadgetstore always builds with local tools.",
)
@pass_app
@user_errors
def build(
    app: AppContext,
    path: Path,
    image: str,
    build_file: Path | None,
    output_dir: Path | None,
    include_dirs: tuple[Path, ...],
    clang: str | None,
    go: str | None,
    cargo: str | None,
    verbose: bool,
    local: bool,
) -> None:
    """Build a gadget image from PATH (default: the current directory).

    Headers: --include DIRs, then IG_SOURCE_PATH or the Inspektor Gadget tree above PATH (the first
    directory with include/gadget/), else /usr/include/gadget/<arch>/. Set SOURCE_DATE_EPOCH for a
    reproducible image digest.
    """
    del local  # always local: there is no builder container
    request = BuildRequest(
        gadget_dir=path,
        build_file=build_file,
        output_dir=output_dir,
        source_date_epoch=os.environ.get("SOURCE_DATE_EPOCH"),
        include_dirs=include_dirs,
        ig_source_path=os.environ.get("IG_SOURCE_PATH") or None,
        clang=clang,
        go=go,
        cargo=cargo,
    )
    built = build_image(app.store, request, image, _log_to_stderr if verbose else lambda line: None)
    # ig prints this with cobra's cmd.Printf, which goes to stderr.
    click.echo(f"Successfully built {built}", err=True)
