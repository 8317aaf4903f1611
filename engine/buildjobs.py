"""Running the build's commands: each job's steps in order, the jobs side by side.

The two architectures compile at the same time (clang is single-threaded), and a wasm module
builds beside them. The error reported is that of the first job, in the order given, that failed
on its own: when a job fails, the jobs after it are stopped (their whole process groups), the jobs
before it run to their end, so the same inputs always give the same message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .buildspec import BuildError

DEFAULT_TIMEOUT = 300


@dataclass(frozen=True)
class Step:
    command: list[str]
    cwd: Path
    what: str
    """Names the step in errors: ``clang compile for amd64``."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to the inherited environment."""
    timeout: float = DEFAULT_TIMEOUT

    def shell_line(self) -> str:
        """The step as a shell line, for ``-v``."""
        assignments = [f"{key}={value}" for key, value in self.env.items()]
        return " ".join([*assignments, *(_quote(arg) for arg in self.command)])


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./=:,+@%" for c in arg) else "'" + arg.replace("'", "'\\''") + "'"


class _Runner:
    def __init__(self, job_count: int, hint: Callable[[str], str]) -> None:
        self._lock = threading.Lock()
        self._stopped = [False] * job_count
        self._running: dict[int, subprocess.Popen[bytes]] = {}
        self._hint = hint

    def stop_after(self, index: int) -> None:
        """Stop every job after ``index`` (or all of them, for -1) and kill what they are running."""
        with self._lock:
            for other in range(index + 1, len(self._stopped)):
                self._stopped[other] = True
                process = self._running.get(other)
                if process is not None:
                    kill_group(process)

    def run(self, index: int, steps: Sequence[Step]) -> BuildError | None:
        for step in steps:
            error = self._run_step(index, step)
            if error is not None or self._is_stopped(index):
                return error
        return None

    def _is_stopped(self, index: int) -> bool:
        with self._lock:
            return self._stopped[index]

    def _run_step(self, index: int, step: Step) -> BuildError | None:
        """One command; its output goes to files, so a grandchild that outlives it cannot hold the build."""
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            with self._lock:
                if self._stopped[index]:
                    return None
                try:
                    process = start_in_session(step.command, stdout, stderr, {**os.environ, **step.env}, step.cwd)
                except OSError as err:
                    return self._fail(index, BuildError(f"{step.what}: cannot run {step.command[0]}: "
                                                        f"{err.strerror or err}"))
                self._running[index] = process
            try:
                exited = wait_or_kill(process, step.timeout)
            finally:
                with self._lock:
                    self._running.pop(index, None)
            if not exited:
                return self._fail(index, BuildError(f"{step.what}: timed out after {step.timeout:g} s"))
            if self._is_stopped(index) or process.returncode == 0:
                return None
            message = (read_output(stderr) or read_output(stdout)).rstrip() or "(no output)"
            return self._fail(index, BuildError(
                f"{step.what} failed (exit status {process.returncode}):\n{message}{self._hint(message)}"
            ))

    def _fail(self, index: int, error: BuildError) -> BuildError:
        self.stop_after(index)
        return error


def start_in_session(command: Sequence[str], stdout: IO[bytes], stderr: IO[bytes],
                     env: Mapping[str, str] | None, cwd: Path | None) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own (so :func:`kill_group` reaches all it starts), its
    output into files: complete when it exits, whatever a process it left behind holds open."""
    return subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            start_new_session=True)


def wait_or_kill(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """True when ``process`` exits within ``timeout`` seconds; else it is killed with its group,
    reaped, and False."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        process.wait()
        return False
    return True


def read_output(output: IO[bytes]) -> str:
    """What a command wrote into ``output`` (a temporary file), as text."""
    output.seek(0)
    return output.read().decode(errors="replace")


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` (started with ``start_new_session``) and everything it started."""
    if process.returncode is not None:  # reaped: its id may already belong to someone else
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_jobs(jobs: Sequence[Sequence[Step]], hint: Callable[[str], str] = lambda message: "") -> None:
    """Run the jobs at once; raise the error of the first job (in order) that failed on its own.

    ``hint`` adds a line to a failed step's message (which package to install, which clang to use).
    """
    runner = _Runner(len(jobs), hint)
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = [pool.submit(runner.run, index, steps) for index, steps in enumerate(jobs)]
        try:
            errors = [future.result() for future in futures]
        except BaseException:
            runner.stop_after(-1)
            raise
    for error in errors:
        if error is not None:
            raise error
