"""Requests and responses as plain values, so routing is a pure function tested without sockets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from gadgetstore.engine.digest import Digest

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")
JSON = "application/json"


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names; repeats joined by ", "

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class BlobSlice:
    """Bytes ``[offset, offset + length)`` of a stored blob of ``size`` bytes, streamed by the server."""

    digest: Digest
    offset: int
    length: int
    size: int


@dataclass(frozen=True)
class ServerResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    blob: BlobSlice | None = None

    @property
    def content_length(self) -> int:
        return self.blob.length if self.blob is not None else len(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def with_headers(self, *extra: tuple[str, str]) -> ServerResponse:
        return replace(self, headers=self.headers + extra)

    def wire_headers(self) -> list[tuple[str, str]]:
        """Headers as sent: the API version and Content-Length are added to every response."""
        return [API_VERSION_HEADER, *self.headers, ("Content-Length", str(self.content_length))]


def json_response(status: int, obj: object, content_type: str = JSON, *extra: tuple[str, str]) -> ServerResponse:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return ServerResponse(status, (("Content-Type", content_type), *extra), body)


def error(status: int, code: str, message: str, detail: object = None, *extra: tuple[str, str]) -> ServerResponse:
    """A distribution-spec error body: ``{"errors": [{"code", "message", "detail"?}]}``."""
    entry: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    return json_response(status, {"errors": [entry]}, JSON, *extra)
