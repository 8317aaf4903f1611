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
@click.option("--max-requests", default=ServeConfig.max_requests, show_default=True,
              type=click.IntRange(1, 10_000),
              help="Requests answered at once; more wait for a slot. Idle connections hold none.")
@click.option("--max-connections", default=ServeConfig.max_connections, show_default=True,
              type=click.IntRange(1, 100_000),
              help="Connections open at once, idle ones included. When all are taken, the one idle "
                   "longest is closed for a new one; when none is idle, new ones wait in the listen queue.")
@click.option("--max-client-connections", default=ServeConfig.max_client_connections, show_default=True,
              type=click.IntRange(0, 100_000),
              help="Connections open at once from one client address (0: no limit); loopback clients "
                   "are not limited. A gadgetstore pull opens at most 8 per origin, so this leaves room "
                   "for peers and other tools on a node; raise it when many clients share one address (NAT).")
@click.option("--header-timeout", default=ServeConfig.header_timeout, show_default=True,
              type=click.FloatRange(0.1, 3600),
              help="Seconds a client has to send a whole request head (from its connect, or from the "
                   "first byte of a request on a kept-alive connection).")
@click.option("-q", "--quiet", is_flag=True, help="Do not log each request.")
@pass_app
@user_errors
def serve(app: AppContext, listen: str, max_requests: int, max_connections: int, max_client_connections: int,
          header_timeout: float, quiet: bool) -> None:
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

    config = ServeConfig(max_requests=max_requests, max_connections=max_connections,
                         max_client_connections=max_client_connections, header_timeout=header_timeout)
    trio.run(run, store, listen, config, ready)
