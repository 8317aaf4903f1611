"""Advisory file locks shared by every process that writes one store.

``index.json.lock`` (the name ``ig`` uses) serialises journal appends. ``gc.lock`` is a lease: every
writer that commits blobs before tagging them holds it shared, and gc holds it exclusively, so gc
never deletes a blob that a running pull or import has committed but not yet tagged.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def flocked(path: Path, exclusive: bool = True) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_flocked(path: Path) -> Iterator[bool]:
    """The exclusive lock if nobody holds it now (True), else False at once, without waiting."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)
