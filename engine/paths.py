"""Where the store lives: ``--store``, then ``GADGETSTORE_ROOT``, then a per-user default."""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_ROOT = Path("/var/lib/gadgetstore")


def default_store_root() -> Path:
    env = os.environ.get("GADGETSTORE_ROOT")
    if env:
        return Path(env)
    return SYSTEM_ROOT if os.geteuid() == 0 else data_home() / "gadgetstore"


def data_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    return Path(xdg) if xdg else Path.home() / ".local" / "share"
