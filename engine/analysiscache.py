"""The analysis cache: where ``image inspect`` (and the mounted view) keep their analyses of
layers, how an entry is read and written, and when gc drops one.

The cache is not in the store, of either kind: ``inspect``, ``mount`` and ``serve`` only read the
store, and reading commands write nothing there (a store may be read by a user who cannot write
it, backed up or compared while it is read). It lives in the cache home
(:func:`.paths.cache_home`: ``$XDG_CACHE_HOME/gadgetstore``, else ``/var/cache/gadgetstore`` as
root, else ``~/.cache/gadgetstore``), shared by every store there: entries are keyed by the digest
of what they analyse (a layer, or an architecture manifest), at
``<cache>/<ANALYSIS_VERSION>/<alg>/<hex><suffix>``; :mod:`.imageinspect` decides the suffixes and the bytes.

Blobs are immutable, so an entry never goes stale: gc drops the entries of the blobs it deletes
(another store that still holds one computes it again), and :data:`ANALYSIS_VERSION` changes
whenever what the analysis computes changes. Entries are written without fsync (a cache must not
slow the command that fills it), so after a crash one may be missing, short or zero-filled: each
entry therefore checks itself. Its content is followed by a trailer (:data:`_TRAILER`: the content's
length, its CRC-32 and a marker), and an entry whose trailer does not match its content is a miss,
which the caller computes again and writes over it. Every failure to write an entry is ignored too:
a torn, lost or unwritable entry costs a recomputation, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import struct
import zlib
from pathlib import Path

from .digest import Digest
from .errors import GadgetStoreError, StoreError
from .fsutil import atomic_write, ensure_real_dir
from .paths import cache_home

ANALYSIS_VERSION = "v3"


LEGACY_DIRECTORY = "analysis"
"""A directory of gadgetstore's own store that no command reads or writes: gc removes it."""


def directory() -> Path:
    """The cache (see the module docstring)."""
    return cache_home() / "analysis"


def entry_path(cache: Path, digest: Digest, suffix: str) -> Path:
    return cache / ANALYSIS_VERSION / digest.algorithm / f"{digest.hex}{suffix}"


_TRAILER = struct.Struct("<QI8s")
"""After an entry's content: its length, its CRC-32 and :data:`_MARKER`. A checksum, not a digest:
it guards against a crash's damage, and the warm path reads every byte of what it prints anyway."""
_MARKER = b"gs-cache"


def _content_length(data: bytes | mmap.mmap) -> int | None:
    """The length of the content before the trailer, when the trailer matches it; else None."""
    if len(data) < _TRAILER.size:
        return None
    length, crc, marker = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
    if marker != _MARKER or length != len(data) - _TRAILER.size:
        return None
    return length if zlib.crc32(memoryview(data)[:length]) == crc else None


def map_entry(path: Path) -> tuple[mmap.mmap, int] | None:
    """The entry mapped read-only (parts are copied out only when used) and the length of its
    content; None when it is absent or fails its check."""
    try:
        with open(path, "rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
        return None
    length = _content_length(mapped)
    if length is None:
        mapped.close()
        return None
    return mapped, length


def read_text_entry(path: Path) -> str | None:
    """The entry's content as text; None when it is absent, fails its check or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    length = _content_length(data)
    if length is None:
        return None
    try:
        return str(memoryview(data)[:length], "utf-8")
    except UnicodeDecodeError:
        return None


def save_entry(path: Path, data: bytes) -> None:
    """Write the entry at ``path`` (an :func:`entry_path`), its trailer after it; best effort: a
    cache that cannot be written is skipped, and the analysis is computed again next time. A
    directory of the cache that is a symlink or not a directory is not written through: skipped as
    well, since the command asked for an analysis, not for a cache."""
    try:
        os.makedirs(path.parents[3], 0o755, exist_ok=True)  # where the cache directory goes
        for directory in (path.parents[2], path.parents[1], path.parent):  # the cache, its version, alg
            ensure_real_dir(directory)
        atomic_write(path, data + _TRAILER.pack(len(data), zlib.crc32(data), _MARKER), 0o644, durable=False)
    except (OSError, StoreError):
        pass


def prune(cache: Path, deleted: set[Digest]) -> int:
    """Remove the entries of the blobs in ``deleted`` (and files that name no blob); returns how
    many were removed."""
    removed = 0
    for entry in _entries(cache):
        try:
            digest = Digest.parse(f"{entry.parent.name}:{entry.name.split('.', 1)[0]}")
        except GadgetStoreError:
            digest = None
        if digest is None or digest in deleted:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
    return removed


def _entries(cache: Path) -> list[Path]:
    """The files at ``<cache>/<version>/<alg>/``, reached through real directories only: gc deletes
    nothing outside the cache, where :func:`save_entry` writes nothing either."""
    found: list[Path] = []
    for version in _real_subdirectories(cache):
        for algorithm in _real_subdirectories(version):
            with contextlib.suppress(OSError), os.scandir(algorithm) as it:
                found += [Path(entry.path) for entry in it if entry.is_file(follow_symlinks=False)]
    return sorted(found)


def _real_subdirectories(directory: Path) -> list[Path]:
    """The directories in ``directory``, none through a symlink (``directory`` itself included)."""
    if os.path.islink(directory):
        return []
    with contextlib.suppress(OSError), os.scandir(directory) as it:
        return [Path(entry.path) for entry in it if entry.is_dir(follow_symlinks=False)]
    return []


def remove_legacy(store_root: Path) -> int:
    """Remove :data:`LEGACY_DIRECTORY` from gadgetstore's own store; returns how many files went."""
    legacy = store_root / LEGACY_DIRECTORY
    if not legacy.is_dir() or legacy.is_symlink():
        return 0
    files = sum(1 for path in legacy.rglob("*") if path.is_file())
    shutil.rmtree(legacy, ignore_errors=True)
    return files
