"""Tiny HTTP servers for tests: a scripted fake registry and a fault-injecting proxy.

Both run in a background thread (``http.server``), so the code under test (trio, in the test's
own thread) talks to them over real sockets. :class:`FaultProxy` forwards to a real registry and
applies :class:`Fault` rules: truncate, corrupt, delay, hold, stall, drop, answer with a status,
ignore Range. Each fault sets its ``arrived`` event when it takes a request: a test waits on that,
never on a sleep, to know the code under test is blocked there.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support import httpserver


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False  # close the connection without answering
    reason: str | None = None  # the status line's reason phrase, when not the standard one


Handler = Callable[[Request], Reply]


class _ThreadedServer:
    """An ``http.server`` on 127.0.0.1:<random port> in a daemon thread; subclasses answer requests."""

    def __init__(self) -> None:
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer._respond(self, self.rfile.read(length) if length else b"")

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self._server = httpserver.serve(_H)
        self.port = int(self._server.server_address[1])

    def _respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        httpserver.stop(self._server)


class FakeServer(_ThreadedServer):
    """Serve ``handler`` on 127.0.0.1:<random port>; records every request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        super().__init__()

    def _respond(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        req = Request(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body)
        self.requests.append(req)
        reply = self.handler(req)
        if reply.drop:
            h.close_connection = True
            return
        h.send_response(reply.status, reply.reason)
        for key, value in {"Content-Length": str(len(reply.body)), **reply.headers}.items():
            h.send_header(key, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(reply.body)


@dataclass
class Fault:
    """Applied to the next ``times`` requests whose ``METHOD path`` matches ``pattern``.

    kind: ``status`` (answer ``status`` with ``headers``), ``drop`` (close without answering),
    ``truncate`` (send the head and ``at`` body bytes, then close), ``corrupt`` (flip byte ``at``),
    ``delay`` (sleep ``seconds`` first), ``ignore-range`` (forward without the Range header),
    ``add-headers`` (forward, and add ``headers`` to the answer), ``hold`` (answer nothing until the
    proxy is released or closed), ``stall`` (send the head and ``at`` body bytes, then hold),
    ``gate`` (wait until the proxy is released, then forward as usual), ``taken`` (forward, so the
    registry acts on the request, then answer ``status`` instead of its answer).
    """

    pattern: str
    kind: str
    times: int = 1
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    at: int = 0
    seconds: float = 0.0
    range_start: int | None = None  # only Range requests starting at this byte
    hits: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)  # set at the first request it takes


class FaultProxy(_ThreadedServer):
    """A reverse proxy in front of ``upstream`` (``host:port``, plain HTTP) that misbehaves on cue."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.released = threading.Event()  # ends every hold
        super().__init__()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        super().close()

    def _respond(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection")}
        self.requests.append((h.command, h.path, dict(headers)))
        fault = self._take(f"{h.command} {h.path}", headers.get("Range"))
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        if fault is not None and fault.kind == "hold":
            self.released.wait()
            h.close_connection = True
            return
        if fault is not None and fault.kind == "gate":
            self.released.wait()
        if fault is not None and fault.kind == "drop":
            h.close_connection = True
            return
        if fault is not None and fault.kind == "status":
            h.send_response(fault.status)
            for key, value in {"Content-Length": "0", **fault.headers}.items():
                h.send_header(key, value)
            h.end_headers()
            return
        if fault is not None and fault.kind == "ignore-range":
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            conn.request(h.command, h.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if fault is not None and fault.kind == "taken":
                h.send_response(fault.status)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                    if key.lower() == "location" and value.startswith(f"http://{self.upstream}"):
                        value = value.replace(self.upstream, self.host, 1)
                    h.send_header(key, value)
            if fault is not None and fault.kind == "add-headers":
                for key, value in fault.headers.items():
                    h.send_header(key, value)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if h.command == "HEAD":
                return
            if fault is not None and fault.kind == "stall":
                h.wfile.write(data[: fault.at])
                h.wfile.flush()
                self.released.wait()
                h.close_connection = True
                return
            if fault is not None and fault.kind == "truncate":
                h.wfile.write(data[: fault.at])
                h.wfile.flush()
                h.close_connection = True
                return
            if fault is not None and fault.kind == "corrupt" and data:
                pos = min(fault.at, len(data) - 1)
                data = data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:]
            h.wfile.write(data)
        finally:
            conn.close()

    def add(self, pattern: str, kind: str, **kw: Any) -> Fault:
        fault = Fault(pattern, kind, **kw)
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take(self, line: str, range_header: str | None) -> Fault | None:
        start = int(range_header.removeprefix("bytes=").split("-")[0]) if range_header else None
        with self._lock:
            for fault in self.faults:
                if fault.range_start is not None and fault.range_start != start:
                    continue
                if fault.hits < fault.times and re.search(fault.pattern, line):
                    fault.hits += 1
                    fault.arrived.set()
                    return fault
        return None


def serving(handler: Handler) -> Iterator[FakeServer]:
    """Generator for a pytest fixture: ``yield from serving(handler)``."""
    server = FakeServer(handler)
    try:
        yield server
    finally:
        server.close()
