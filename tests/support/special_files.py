"""Device nodes and FIFOs for tests of paths the user names."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest


def char_device(path: Path) -> Path:
    """A test-owned /dev/null (1, 3), mode 0666: writing it anew would leave a regular file behind."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD (CI runs as root)")
    os.chmod(path, 0o666)
    return path


def is_dev_null(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3) and stat.S_IMODE(st.st_mode) == 0o666


class FifoReader:
    """Makes a FIFO and reads it in a thread, as the process at the other end of a pipe would.

    ``stop_after``: close after that many bytes (a reader that goes away early).
    """

    def __init__(self, path: Path, stop_after: int | None = None) -> None:
        os.mkfifo(path)
        self.data = b""
        self._stop_after = stop_after
        self._thread = threading.Thread(target=self._read, args=(path,), daemon=True)
        self._thread.start()

    def _read(self, path: Path) -> None:
        with open(path, "rb") as fifo:
            self.data = fifo.read() if self._stop_after is None else fifo.read(self._stop_after)

    def join(self) -> bytes:
        """Everything read; fails the test when the writer never closed its end."""
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the FIFO reader never saw the end of the data"
        return self.data
