"""The one way tests run an ``http.server``: 127.0.0.1, a daemon thread, quiet about clients leaving.

Handler threads outlive :func:`stop` (they are daemons, so a client's idle keep-alive connection
cannot hang a test's teardown). A client that hangs up mid-answer is what the fault tests do on
purpose; the default ``handle_error`` would print that traceback into whatever test runs next
(a CLI test captures stderr and fails on a traceback), so it is dropped here; any other error
is still printed.
"""

from __future__ import annotations

import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def serve(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0) -> QuietHTTPServer:
    """Start serving ``handler`` in a daemon thread; the bound port is ``server.server_address[1]``."""
    server = QuietHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: QuietHTTPServer) -> None:
    server.shutdown()
    server.server_close()


async def plain_http_only(origin: object) -> ssl.SSLContext:
    """A pool's TLS contexts where a test speaks plain HTTP only: asking for one is a test bug."""
    raise AssertionError(f"{origin}: this test speaks plain HTTP only")
