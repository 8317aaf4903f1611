"""One scratch directory per test session, removed when the session ends.

pytest's ``tmp_path`` directories (``<root>/pytest``) and everything tests, product code and
subprocesses make through ``tempfile`` (``TMPDIR=<root>/tmp``) live under one ``mkdtemp`` root,
so a run leaves nothing in the temporary directory, whatever the outcome. Mounts a failed test
left behind and read-only files or directories do not stop the removal.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

PREFIX = "gadgetstore-tests-"


_SESSION_ROOT = pytest.StashKey[tuple[Path, str | None]]()


def make_session_root() -> Path:
    return Path(tempfile.mkdtemp(prefix=PREFIX)).resolve()


def enter_session_root(config: pytest.Config) -> None:
    """Put ``tmp_path`` and ``TMPDIR`` under one fresh directory (``--basetemp`` keeps its own)."""
    if config.option.basetemp is not None:
        return
    root = make_session_root()
    (root / "tmp").mkdir()
    config.option.basetemp = str(root / "pytest")
    config.stash[_SESSION_ROOT] = (root, os.environ.get("TMPDIR"))
    os.environ["TMPDIR"] = str(root / "tmp")  # subprocesses too
    tempfile.tempdir = None  # recomputed from TMPDIR on next use


def leave_session_root(config: pytest.Config) -> None:
    """Give ``TMPDIR`` back and remove the session's directory."""
    saved = config.stash.get(_SESSION_ROOT, None)
    if saved is None:
        return
    root, tmpdir = saved
    if tmpdir is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = tmpdir
    tempfile.tempdir = None
    remove_tree(root)


def mounts_under(root: Path) -> list[tuple[Path, str]]:
    """``(mount point, file-system type)`` of every mount at or below ``root``, deepest first."""
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2:
                point = Path(re.sub(r"\\([0-7]{3})", lambda octal: chr(int(octal[1], 8)), fields[1]))
                if point.is_relative_to(root):
                    found.append((point, fields[2]))
    return sorted(found, key=lambda mount: len(mount[0].parts), reverse=True)


def _unmount(point: Path, fstype: str) -> None:
    command = ["fusermount3", "-u", "-z"] if fstype.startswith("fuse") else ["umount", "-l"]
    subprocess.run([*command, str(point)], capture_output=True, check=False)


def _force(func: Any, path: str, exc_info: tuple[type[BaseException], BaseException, TracebackType]) -> None:
    """rmtree's error handler: make the entry and its directory ours, then remove it again."""
    error = exc_info[1]
    if isinstance(error, FileNotFoundError):
        return
    if not isinstance(error, PermissionError):
        raise error
    os.chmod(os.path.dirname(path), 0o700)
    if func in (os.open, os.scandir, os.listdir):  # a directory we could not read
        os.chmod(path, 0o700)
        shutil.rmtree(path, onerror=_force)
    else:
        func(path)


def remove_tree(root: Path) -> None:
    """``rm -rf root`` through leftover mounts and read-only entries; says so on stderr if it cannot."""
    for point, fstype in mounts_under(root):
        _unmount(point, fstype)
    try:
        shutil.rmtree(root, onerror=_force)
    except OSError as error:
        print(f"could not remove the test session's directory {root}: {error}", file=sys.stderr)
