"""The analysis cache: where ``image inspect`` (and the mounted view) keep their analyses of
layers, how an entry is read and written, and when gc drops one.

Entries are keyed by the digest of what they analyse (a layer, or an architecture manifest) and
live at ``<cache>/<ANALYSIS_VERSION>/<alg>/<hex><suffix>``; :mod:`.inspect` decides the suffixes
and the bytes. Blobs are immutable, so an entry never goes stale: gc drops the entries of blobs
that are gone, and :data:`ANALYSIS_VERSION` changes whenever what the analysis computes changes.
Entries are written without fsync, and every failure to write one is ignored: a torn, lost or
unwritable entry is a miss, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from pathlib import Path

from .digest import Digest
from .errors import GadgetStoreError
from .fsutil import atomic_write, ensure_real_dir
from .paths import cache_home

ANALYSIS_VERSION = "v3"


def directory(root: Path, shared: bool) -> Path:
    """The cache of the store at ``root``: its own ``analysis/`` in gadgetstore's store, the cache
    home for a layout shared with ig (which gadgetstore never adds files to)."""
    return cache_home() / "analysis" if shared else root / "analysis"


def entry_path(cache: Path, digest: Digest, suffix: str) -> Path:
    return cache / ANALYSIS_VERSION / digest.algorithm / f"{digest.hex}{suffix}"


def map_entry(path: Path) -> mmap.mmap | None:
    """The entry mapped read-only (parts are copied out only when used); None if absent or empty."""
    try:
        with open(path, "rb") as file:
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
        return None


def read_entry(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def save_entry(path: Path, data: bytes) -> None:
    """Write the entry at ``path`` (an :func:`entry_path`); best effort: a cache that cannot be
    written is skipped, and the analysis is computed again next time. A directory of the cache
    that is a symlink is refused (:class:`~.errors.StoreError`), not followed."""
    try:
        os.makedirs(path.parents[3], 0o755, exist_ok=True)  # where the cache directory goes
        for directory in (path.parents[2], path.parents[1], path.parent):  # the cache, its version, alg
            ensure_real_dir(directory)
        atomic_write(path, data, 0o644, durable=False)
    except OSError:
        pass


def prune(cache: Path, reachable: set[Digest]) -> int:
    """Remove the entries of blobs not in ``reachable``; returns how many were removed."""
    removed = 0
    for entry in sorted(cache.glob("*/*/*")):
        try:
            digest = Digest.parse(f"{entry.parent.name}:{entry.name.split('.', 1)[0]}")
        except GadgetStoreError:
            digest = None
        if (digest is None or digest not in reachable) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
    return removed
