"""Named crash points on the durable-write paths.

Production code calls :func:`crash_point` between the steps of an ingest or a journal append.
It does nothing unless a test has set ``GADGETSTORE_CRASH_AT`` to that name, in which case the
process kills itself with SIGKILL — the closest thing to pulling the plug that a test can do.
"""

from __future__ import annotations

import os
import signal

_TARGET = os.environ.get("GADGETSTORE_CRASH_AT")


def crash_point(name: str) -> None:
    if _TARGET is not None and name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
