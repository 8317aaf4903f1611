"""Content digests: parsed once at the edge, so no unvalidated string ever becomes a path."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import InvalidDigest

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"([a-z0-9]+):([0-9a-f]+)")


@dataclass(frozen=True, order=True)
class Digest:
    """A validated ``algorithm:hex`` digest of a known algorithm."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        return cls(*_parts(text))

    @staticmethod
    def check(text: object) -> None:
        """Raise what :meth:`parse` would, without making a Digest (a journal's replay checks thousands)."""
        _parts(text)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        """The first 12 hex characters, as ``ig image list`` shows on a terminal."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def _parts(text: object) -> tuple[str, str]:
    """(algorithm, hex) of a valid digest; :class:`InvalidDigest` saying what is wrong otherwise."""
    match = _DIGEST_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidDigest(f"invalid digest {text!r}: expected 'sha256:' followed by lowercase hex")
    algorithm, hexpart = match.groups()
    expected = _HEX_LENGTH.get(algorithm)
    if expected is None:
        raise InvalidDigest(f"invalid digest {text!r}: unsupported algorithm {algorithm!r}")
    if len(hexpart) != expected:
        raise InvalidDigest(
            f"invalid digest {text!r}: {algorithm} needs {expected} hex characters, got {len(hexpart)}"
        )
    return algorithm, hexpart
