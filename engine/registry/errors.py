"""Errors of registry transfers, under the engine's one hierarchy (each exits 1).

    GadgetStoreError
    └── RegistryError             a registry answered something we cannot use
        ├── TransportError        connection refused/reset/timed out, TLS failure (retried)
        │   ├── BodyTooLarge      (http) a body longer than the caller allowed (never retried)
        │   └── PlainHTTPError    (http) a TLS handshake answered in plain HTTP (never retried)
        ├── InvalidHeader         a response header we read that is not visible ASCII or does not parse
        ├── BadRangeAnswer        a Range request answered with other bytes, or Range no longer honoured
        ├── AuthError             401/403, bad credentials, a refused token realm
        ├── NotFoundInRegistry    404 for a manifest or blob
        ├── RateLimited           429 after every retry
        └── RegistryUnavailable   5xx after every retry
"""

from __future__ import annotations

from ..errors import GadgetStoreError


class RegistryError(GadgetStoreError):
    pass


class TransportError(RegistryError):
    """Retriable: nothing useful came back on this connection."""

    def __init__(self, message: str, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class InvalidHeader(RegistryError):
    """Never retried: a registry that sends such a header once will send it again."""


class BadRangeAnswer(RegistryError):
    """The blob is fetched again whole: the bytes a broken Range answer left are not trusted."""


class AuthError(RegistryError):
    pass


class NotFoundInRegistry(RegistryError):
    pass


class RateLimited(RegistryError):
    pass


class RegistryUnavailable(RegistryError):
    pass
