"""Running ``gadgetstore mount`` in a subprocess for tests and benchmarks, and sweeping stale mounts."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

FSTYPE = "fuse.gadgetstore"
_PR_SET_PDEATHSIG = 1


def fuse_unavailable_reason() -> str | None:
    """Why real mounts cannot run here, or None. Only a missing device or helper counts."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist on this machine (no FUSE kernel support or not exposed to the container)"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3)"
    return None


def gadgetstore_mounts() -> list[Path]:
    out = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == FSTYPE:
                out.append(Path(fields[1].replace("\\040", " ")))
    return out


def lazy_unmount(path: Path) -> None:
    subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True, check=False)


def sweep_stale_mounts(under: Path, *, dead_only: bool) -> list[Path]:
    """Unmount our mounts below ``under``: all of them, or only those whose daemon is gone."""
    swept = []
    for path in gadgetstore_mounts():
        if not path.is_relative_to(under):
            continue
        if dead_only:
            try:
                os.stat(path)
                continue
            except OSError as err:
                if err.errno != errno.ENOTCONN:
                    continue
        lazy_unmount(path)
        swept.append(path)
    return swept


def _die_with_parent() -> None:
    """In the child: SIGTERM (a clean unmount) when the test process dies, so no mount outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Mount:
    def __init__(self, store_root: Path, mountpoint: Path, log_path: Path, *extra: str) -> None:
        self.store_root = store_root
        self.path = mountpoint
        self.log_path = log_path
        mountpoint.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "gadgetstore.cli.mount", "--store", str(store_root), "mount", *extra,
                   str(mountpoint)]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self._wait_mounted()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_mounted(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mount exited with {self.proc.returncode} before mounting:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"not mounted after {timeout}s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (the daemon unmounts itself); fall back to a lazy unmount and SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                lazy_unmount(self.path)
                self.proc.kill()
                self.proc.wait()
        if os.path.ismount(self.path):
            lazy_unmount(self.path)
        return self.proc.returncode


@contextlib.contextmanager
def mounted(store_root: Path, mountpoint: Path, log_path: Path, *extra: str) -> Iterator[Mount]:
    mount = Mount(store_root, mountpoint, log_path, *extra)
    try:
        yield mount
    finally:
        mount.stop()


_SYS_GETDENTS64 = {"x86_64": 217, "aarch64": 61}


def getdents_in_small_batches(path: Path, buffer_size: int = 256) -> Iterator[list[str]]:
    """Names of a directory, one small ``getdents64`` buffer at a time, so that the kernel has to
    come back to the file system with the offsets it was given (``os.scandir`` reads 32 KB at once)."""
    libc = ctypes.CDLL(None, use_errno=True)
    number = _SYS_GETDENTS64[os.uname().machine]
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buf = ctypes.create_string_buffer(buffer_size)
        while True:
            got = libc.syscall(number, fd, buf, buffer_size)
            if got < 0:
                raise OSError(ctypes.get_errno(), "getdents64 failed")
            if got == 0:
                return
            names, pos = [], 0
            while pos < got:
                reclen = int.from_bytes(buf.raw[pos + 16 : pos + 18], "little")
                name = buf.raw[pos + 19 : pos + reclen].split(b"\0", 1)[0]
                if name not in (b".", b".."):
                    names.append(os.fsdecode(name))
                pos += reclen
            yield names
    finally:
        os.close(fd)
