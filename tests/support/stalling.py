"""Servers that hold a client without failing: the cases an idle timeout per read never ends.

:class:`SlowServer` listens on 127.0.0.1 (a daemon thread per connection) and answers each request
in one of two ways: ``silent`` reads the request and never answers; ``trickle`` sends a 200 head
with a ``Content-Length`` of ``body_size``, then ``piece`` bytes every ``interval`` seconds. Its
``arrived`` event is set when a request has been read, so a test waits on that, never on a sleep.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class SlowServer:
    def __init__(self, mode: str, body_size: int = 1 << 20, piece: int = 1, interval: float = 0.02) -> None:
        if mode not in ("silent", "trickle"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.body_size = body_size
        self.piece = piece
        self.interval = interval
        self.arrived = threading.Event()
        self.requests = 0
        self.sent = 0  # body bytes sent, over every request
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            with self._lock:
                self.requests += 1
            self.arrived.set()
            if self.mode == "silent":
                self._closed.wait()
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % self.body_size)
            left = self.body_size
            while left > 0 and not self._closed.wait(self.interval):
                size = min(self.piece, left)
                conn.sendall(b"x" * size)
                left -= size
                with self._lock:
                    self.sent += size

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
