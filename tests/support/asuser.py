"""Running the CLI as another user (uid 65534, "nobody"), for tests of stores such a user can only read.

The child starts as that user (Popen's ``user``/``group``). It needs an interpreter and the package it can read:
the venv's interpreter may live under root's home (pyenv), so the system interpreter of the same
version is tried too, with the venv's site-packages added (where the editable install points at
this checkout). A test directory is made traversable (``o+x``, not listable) from the user's side.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

NOBODY = 65534
_LAUNCH = ("import site, sys; site.addsitedir({purelib!r}); sys.argv[0] = 'gadgetstore'; "
           "from gadgetstore.cli.main import main; sys.exit(main())")


def _as(uid: int) -> dict[str, object]:
    """Popen arguments that start the child as ``uid`` (its group too, and no other)."""
    return {"user": uid, "group": uid, "extra_groups": []}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


@functools.cache
def interpreter_for(uid: int) -> str | None:
    """An interpreter ``uid`` can start that imports this checkout's gadgetstore, or None."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [os.path.realpath(sys.executable), f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    purelib = sysconfig.get_paths()["purelib"]
    for python in dict.fromkeys(candidates):
        if not os.path.exists(python):
            continue
        try:
            probe = subprocess.run([python, "-c", f"import site; site.addsitedir({purelib!r}); "
                                    "import gadgetstore.cli.main"], env=_env(), capture_output=True, check=False,
                                   cwd="/", **_as(uid))  # type: ignore[call-overload]
        except OSError:  # the user may not run it at all
            continue
        if probe.returncode == 0:
            return python
    return None


def require_user(uid: int = NOBODY) -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root, to run a command as another user")
    python = interpreter_for(uid)
    if python is None:
        pytest.skip(f"no Python {sys.version_info.major}.{sys.version_info.minor} that uid {uid} may run "
                    "imports this checkout (its files must be world-readable)")
    return python


def open_path_to(path: Path) -> None:
    """Let other users reach ``path``: add ``o+x`` (search, not list) to each of its ancestors we own."""
    for parent in reversed(path.parents):
        st = parent.stat()
        if st.st_uid == os.geteuid() and not st.st_mode & 0o001:
            os.chmod(parent, (st.st_mode & 0o7777) | 0o001)


def run_cli_as(uid: int, store: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """``gadgetstore --store STORE ARGS…`` as ``uid``; stdout and stderr as bytes."""
    python = require_user(uid)
    code = _LAUNCH.format(purelib=sysconfig.get_paths()["purelib"])
    return subprocess.run([python, "-c", code, "--store", str(store), *args], env=_env(env),
                          capture_output=True, timeout=timeout, check=False, cwd="/",
                          **_as(uid))  # type: ignore[call-overload]


def popen_cli_as(uid: int, store: Path, *args: str) -> subprocess.Popen[bytes]:
    """:func:`run_cli_as` for a command that keeps running (serve)."""
    python = require_user(uid)
    code = _LAUNCH.format(purelib=sysconfig.get_paths()["purelib"])
    return subprocess.Popen([python, "-c", code, "--store", str(store), *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", **_as(uid))  # type: ignore[call-overload]
