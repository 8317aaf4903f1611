"""Files the user names on the command line, read and written the way ``tar -f`` takes them.

- ``-`` is standard output when writing and standard input when reading.
- A character or block device or a FIFO is opened and written into, never replaced: whoever names
  ``/dev/null`` or a named pipe means that file, not a new regular file in its place. A socket
  cannot be opened: an error, and the socket stays.
- A symlink is followed: it stays a symlink and its final target gets the bytes (the target of a
  dangling one is created).
- A regular file, or a new one, is written beside its final target and renamed over it once
  complete, so nothing half-written is ever visible under its name.
- A directory is an error. Every error names the path as the user typed it, never a temporary
  file, and leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import GadgetStoreError, UserPathError
from .fsutil import Replacement

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

STDIO = "-"
_BUFFER_BYTES = 256 * 1024


def is_stdio(path: Path | str) -> bool:
    return str(path) == STDIO


def output_name(path: Path | str) -> str:
    """How messages name an output path."""
    return "standard output" if is_stdio(path) else str(path)


def input_name(path: Path | str) -> str:
    """How messages name an input path."""
    return "standard input" if is_stdio(path) else str(path)


@contextlib.contextmanager
def _naming(shown: str, verb: str = "write") -> Iterator[None]:
    """OS errors of the operations inside, as one line naming the user's path."""
    try:
        yield
    except OSError as err:
        raise UserPathError(f"cannot {verb} {shown}: {err.strerror or err}") from None


def _target_stat(path: Path) -> os.stat_result | None:
    """What ``path`` names once symlinks are followed; None when nothing is there yet."""
    shown = str(path)
    with _naming(shown):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
    if stat.S_ISDIR(st.st_mode):
        raise UserPathError(f"cannot write {shown}: it is a directory")
    return st


def replaces_regular_file(path: Path) -> bool:
    """True when writing ``path`` would replace an existing regular file (through a symlink too).

    A directory raises :class:`UserPathError`, so a caller writing several files can refuse before
    writing the first.
    """
    if is_stdio(path):
        return False
    st = _target_stat(path)
    return st is not None and stat.S_ISREG(st.st_mode)


class _NamedWriter(io.RawIOBase):
    """Raw writes into the user's file; an OS error becomes one line naming the user's path."""

    def __init__(self, write: Callable[[ReadableBuffer], int | None], shown: str) -> None:
        super().__init__()
        self._write, self._shown = write, shown

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        with _naming(self._shown):
            written = self._write(data)
        return memoryview(data).nbytes if written is None else written


class _NamedReader(io.RawIOBase):
    """Raw reads from the user's file; an OS error becomes one line naming the user's path.

    With ``file`` (a regular file, not a pipe) it can also seek, so a reader may take a second pass."""

    def __init__(self, readinto: Callable[[WriteableBuffer], int | None], shown: str,
                 error: Callable[[str], GadgetStoreError], file: io.FileIO | None = None) -> None:
        super().__init__()
        self._readinto, self._shown, self._error = readinto, shown, error
        self._file = file

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._file is not None and self._file.seekable()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if self._file is None:
            raise io.UnsupportedOperation("seek")
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        if self._file is None:
            raise io.UnsupportedOperation("tell")
        return self._file.tell()

    def fileno(self) -> int:
        if self._file is None:
            raise io.UnsupportedOperation("fileno")
        return self._file.fileno()

    def readinto(self, buffer: WriteableBuffer) -> int:
        try:
            return self._readinto(buffer) or 0
        except OSError as err:
            raise self._error(f"cannot read {self._shown}: {err.strerror or err}") from None


@contextlib.contextmanager
def _writing(write: Callable[[ReadableBuffer], int | None], shown: str,
             commit: Callable[[], None], abort: Callable[[], None]) -> Iterator[BinaryIO]:
    """A buffered stream into ``write``; ``commit`` once everything is flushed, ``abort`` on any failure."""
    out = io.BufferedWriter(_NamedWriter(write, shown), buffer_size=_BUFFER_BYTES)
    try:
        yield out
        out.flush()
        with _naming(shown):
            commit()
        out.close()
    except BaseException:
        with contextlib.suppress(Exception):
            out.close()  # whatever it still holds goes where the rest went, or fails again
        abort()
        raise


def _stdout_fd() -> int | None:
    """fd 1 when standard output is a real file; None when it was replaced (tests capturing it)."""
    try:
        return sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return None


def _nothing() -> None:
    pass


@contextlib.contextmanager
def open_output(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary stream whose bytes end up at ``path`` when the block completes (see the module doc).

    ``mode``, less the umask as ``open(2)`` takes it away, applies to a regular file written anew
    (also when replacing one); a device or FIFO keeps its own. Writing into a pipe or standard
    output streams: nothing is held back beyond one buffer.
    """
    if is_stdio(path):
        sys.stdout.flush()
        stdout_fd = _stdout_fd()
        if stdout_fd is None:
            buffer = sys.stdout.buffer
            with _writing(buffer.write, output_name(path), buffer.flush, _nothing) as out:
                yield out
        else:
            # Straight to the fd: after a broken pipe nothing is left in sys.stdout for the
            # interpreter to fail flushing again at exit.
            with _writing(lambda data: os.write(stdout_fd, data), output_name(path), _nothing, _nothing) as out:
                yield out
        return
    shown = str(path)
    st = _target_stat(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        with _naming(shown):
            fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        sync = stat.S_ISBLK(st.st_mode)

        def finish() -> None:
            if sync:
                os.fsync(fd)
            os.close(fd)

        def close_quietly() -> None:
            with contextlib.suppress(OSError):
                os.close(fd)

        with _writing(lambda data: os.write(fd, data), shown, finish, close_quietly) as out:
            yield out
        return
    with _naming(shown):
        replacement = Replacement(Path(os.path.realpath(path)), mode & ~_umask())
    with _writing(lambda data: os.write(replacement.fd, data), shown, replacement.commit,
                  replacement.abort) as out:
        yield out


def _umask() -> int:
    """The process's umask, which a file created with ``open(2)`` would get and a temporary file
    renamed into place does not: read from ``/proc/self/status`` (Linux 4.7 and later), else set
    and put back at once."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o077)
    os.umask(current)
    return current


def write_output(path: Path, data: bytes, mode: int = 0o644) -> None:
    """All of ``data`` to ``path``, by :func:`open_output`'s rules."""
    with open_output(path, mode) as out:
        out.write(data)


def _shown_input(path: Path, what: str) -> str:
    return f"{what} from standard input" if is_stdio(path) else f"{what} {path}"


def _readinto(source: BinaryIO) -> Callable[[WriteableBuffer], int]:
    """``readinto`` for a stream that only promises ``read`` (standard input replaced in tests)."""

    def readinto(buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = source.read(len(view))
        view[: len(data)] = data
        return len(data)

    return readinto


@contextlib.contextmanager
def open_input(path: Path, what: str, error: type[GadgetStoreError] = UserPathError) -> Iterator[BinaryIO]:
    """``path`` opened for reading (``-``: standard input, left open); errors are ``error``\\ s naming
    ``what`` and the path, e.g. ``archive x.tar does not exist``."""
    if is_stdio(path):
        yield io.BufferedReader(_NamedReader(_readinto(sys.stdin.buffer), _shown_input(path, what), error))
        return
    shown = _shown_input(path, what)
    try:
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below, after the caller's block
    except FileNotFoundError:
        raise error(f"{shown} does not exist") from None
    except OSError as err:
        raise error(f"cannot read {shown}: {err.strerror or err}") from None
    with raw, io.BufferedReader(_NamedReader(raw.readinto, shown, error, raw)) as source:
        yield source


def read_input(path: Path, what: str, limit: int, error: type[GadgetStoreError] = UserPathError) -> bytes:
    """At most ``limit`` bytes of ``path`` (``-``: standard input); more is an ``error``."""
    with open_input(path, what, error) as source:
        data = source.read(limit + 1)
    if len(data) > limit:
        raise error(f"{_shown_input(path, what)} is larger than {limit} bytes")
    return data
