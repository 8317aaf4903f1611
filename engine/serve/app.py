"""Running the server as a program: the listen address, signals and a clean shutdown."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import replace

import trio

from gadgetstore.engine.asciidigits import parse_decimal
from gadgetstore.engine.registry.mirrors_config import load as load_registries
from gadgetstore.engine.store import Store

from .server import ServeConfig, Server

DEFAULT_LISTEN = "127.0.0.1:5050"
log = logging.getLogger("gadgetstore.serve")


def parse_listen(text: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (every interface, as Go servers read it)."""
    host, sep, port_text = text.rpartition(":")
    port = parse_decimal(port_text)
    if not sep or port is None or port > 65535:
        raise ValueError(f"listen address {text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"listen address {text!r}: write IPv6 hosts in brackets, e.g. [::1]:5050")
    return (host or None), port


async def run(
    store: Store,
    listen: str = DEFAULT_LISTEN,
    config: ServeConfig | None = None,
    on_ready: Callable[[list[tuple[str, int]]], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; a second signal cuts requests in flight short."""
    host, port = parse_listen(listen)
    config = config or ServeConfig()
    if config.peer_blobs is None:  # a node of a [peers] fleet serves its peers by digest
        registries = await trio.to_thread.run_sync(load_registries)
        config = replace(config, peer_blobs=registries.peers is not None)
        if registries.peers is not None:
            log.info("peer mode: [peers] in %s (%d peers); blobs are served by digest and waited for",
                     registries.source, len(registries.peers.urls))
    server = Server(store, config)
    # Fail before any nursery exists, so a broken store or a busy port is one plain error.
    await server.source.current()
    listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signals, server, nursery.cancel_scope)
        async with trio.open_nursery() as serving:
            addresses = await serving.start(server.serve, listeners)
            if on_ready is not None:
                on_ready(addresses)
        nursery.cancel_scope.cancel()


async def _stop_on_signals(server: Server, everything: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        stopping = False
        async for _ in signals:
            if stopping:
                everything.cancel()
                return
            stopping = True
            server.shutdown()
