"""Where things live: the store (``--store``, then ``GADGETSTORE_ROOT``, then a per-user default),
ig's own store, and the cache."""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_ROOT = Path("/var/lib/gadgetstore")
IG_SYSTEM_STORE = Path("/var/lib/ig/oci-store")
"""ig's store when it runs as root (pkg/oci/oci.go ``rootOciStore``); no flag or variable moves it."""
IG_USER_STORE = Path(".ig") / "oci-store"
"""ig's store of a user who is not root: this, under the home directory /etc/passwd names."""
SYSTEM_CACHE = Path("/var/cache/gadgetstore")


def default_store_root() -> Path:
    env = os.environ.get("GADGETSTORE_ROOT")
    if env:
        return Path(env)
    return SYSTEM_ROOT if os.geteuid() == 0 else data_home() / "gadgetstore"


def data_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    return Path(xdg) if xdg else Path.home() / ".local" / "share"


def is_ig_store_path(root: Path) -> bool:
    """A path where ig keeps its store: a store made there is made as ig makes it."""
    path = Path(os.path.abspath(root))
    return path == IG_SYSTEM_STORE or path.parts[-2:] == IG_USER_STORE.parts


def cache_home() -> Path:
    """gadgetstore's cache: ``$XDG_CACHE_HOME/gadgetstore``, else /var/cache/gadgetstore as root,
    else ``~/.cache/gadgetstore``. Nothing there is needed: a cache that cannot be written is skipped."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "gadgetstore"
    return SYSTEM_CACHE if os.geteuid() == 0 else Path.home() / ".cache" / "gadgetstore"
