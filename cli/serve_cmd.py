"""``gadgetstore serve``: expose the store read-only over the OCI distribution API."""

from __future__ import annotations

import logging
import sys

import click
import trio

from gadgetstore.engine.serve import DEFAULT_LISTEN, ServeConfig, parse_listen, run

from .context import AppContext, pass_app, user_errors


def _check_listen(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_listen(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    return value


@click.command("serve")
@click.option(
    "--listen", default=DEFAULT_LISTEN, show_default=True, callback=_check_listen,
    help="Address to listen on: HOST:PORT, [IPV6]:PORT, or :PORT for every interface.",
)
@click.option("--max-connections", default=128, show_default=True, type=click.IntRange(1, 10_000),
              help="Connections served at once; more wait in the listen queue.")
@click.option("-q", "--quiet", is_flag=True, help="Do not log each request.")
@pass_app
@user_errors
def serve(app: AppContext, listen: str, max_connections: int, quiet: bool) -> None:
    """Serve the store as a read-only registry until SIGINT or SIGTERM.

    Each stored image DOMAIN/PATH:TAG is served as PATH (what registry mirrors ask for) and as
    DOMAIN/PATH. Images added to the store while it runs are served within a second.

    \b
    ig run 127.0.0.1:5050/inspektor-gadget/gadget/trace_open:latest \\
        --insecure-registries 127.0.0.1:5050
    """
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    store = app.store()

    def ready(addresses: list[tuple[str, int]]) -> None:
        for host, port in addresses:
            shown = f"[{host}]" if ":" in host else host
            click.echo(f"serving {store.root} read-only on http://{shown}:{port}/v2/", err=True)

    trio.run(run, store, listen, ServeConfig(max_connections=max_connections), ready)
