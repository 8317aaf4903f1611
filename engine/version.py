"""gadgetstore's version, from its package metadata, and as ``ig version`` prints a version."""

from __future__ import annotations

import importlib.metadata
import re

_SEMVER_CORE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([-+].*)?")


def package_version() -> str:
    try:
        return importlib.metadata.version("gadgetstore")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def ig_version_line(version: str) -> str:
    """cmd/common/version.go: ``"v" + semver.ParseTolerant(version).String()``: a leading ``v`` and
    blanks dropped, a short version padded with ``.0``. A version semver cannot read (a PEP 440
    ``.dev1``, say) is shown as it is rather than as ig's ``v0.0.0``."""
    text = version.strip().removeprefix("v")
    parts = text.split(".", 2)
    if len(parts) < 3 and not any(c in parts[-1] for c in "+-"):
        text = ".".join(parts + ["0"] * (3 - len(parts)))
    return f"v{text}" if _SEMVER_CORE.fullmatch(text) else f"v{version.strip()}"
