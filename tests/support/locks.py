"""Seeing from outside that a thread or process is blocked in ``flock`` (a pause point the kernel keeps).

The kernel lists every granted lock in ``/proc/locks``, and every request still waiting for one
with ``->`` before it (``1: -> FLOCK  ADVISORY  WRITE <pid> <maj>:<min>:<inode> 0 EOF``). A test that
must know the code under test waits for a lock, not merely that it has not finished yet, waits
for that line instead of sleeping.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def flock_waiters(path: Path) -> int:
    """How many ``flock`` requests on ``path`` are waiting now."""
    st = os.stat(path)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if (fields := line.split())[1:3] == ["->", "FLOCK"] and fields[6] == key)


def wait_for_flock_waiter(path: Path, within: float = 30.0) -> None:
    """Return once some request for a lock on ``path`` is waiting; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not flock_waiters(path):
        assert time.monotonic() < deadline, f"nothing waited for the lock on {path}"
        time.sleep(0.001)
