"""What every command shares: the store location, and one-line messages for engine errors and signals."""

from __future__ import annotations

import errno
import functools
import signal
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from gadgetstore.engine.errors import GadgetStoreError, exception_leaves
from gadgetstore.engine.paths import default_store_root

if TYPE_CHECKING:
    from gadgetstore.engine.store import Store

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    store_root: Path | None = None
    _store: Store | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        return self.store_root or default_store_root()

    def store(self) -> Store:
        if self._store is None:
            from gadgetstore.engine.store import Store  # not at start-up: --help and usage errors need none of it

            self._store = Store.open(self.root)
        return self._store


pass_app = click.make_pass_decorator(AppContext, ensure=True)


class _Signals:
    terminated = False  # SIGTERM arrived: it is raised as KeyboardInterrupt, reported as itself


def _on_sigterm(signum: int, frame: types.FrameType | None) -> None:
    """SIGTERM takes SIGINT's path: inside ``trio.run`` trio's own handler delivers it where it is
    safe (a task is cancelled, its cleanup runs); elsewhere it is a KeyboardInterrupt."""
    _Signals.terminated = True
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def handle_sigterm() -> None:
    """Make SIGTERM stop a command as Ctrl-C does: cleanup, one line, exit 143.

    trio delivers the interrupt safely only when SIGINT has Python's default handler as ``trio.run``
    starts (else a signal raised inside its scheduler abandons the run, its cleanup undone); a
    process started with SIGINT ignored (a background job of a non-interactive shell) gets that
    handler back, as Go's signal.Notify takes SIGINT back from an inherited ignore.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _interrupted() -> NoReturn:
    if _Signals.terminated:
        fail("interrupted by SIGTERM", 128 + signal.SIGTERM)
    fail("interrupted", 128 + signal.SIGINT)


def _report(err: BaseException) -> None:
    """Exit with ``err``'s one line if it is a user-facing error; return if it is not."""
    if isinstance(err, KeyboardInterrupt):
        _interrupted()
    if isinstance(err, GadgetStoreError):
        fail(str(err), err.exit_code)
    if isinstance(err, OSError):
        if err.errno == errno.ENOSPC:
            fail("no space left on device; nothing was changed in the store")
        fail(f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))


def user_errors(func: F) -> F:
    """Print engine and OS errors as ``Error: …`` with a non-zero exit, never as a traceback.

    trio delivers Ctrl-C (and SIGTERM, see :func:`handle_sigterm`) inside whatever task runs, so
    it may come wrapped in exception groups: any KeyboardInterrupt in one is an interruption.
    A full disk that surfaces here as a bare ENOSPC struck before anything was recorded (a failed
    journal append is taken back); once a change is in the journal, the store raises
    :class:`~gadgetstore.engine.errors.IndexJsonBehind`, which says so.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (GadgetStoreError, OSError, KeyboardInterrupt) as err:
            _report(err)
            raise
        except BaseExceptionGroup as group:
            leaves = exception_leaves(group)
            if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
                _interrupted()
            if leaves and all(isinstance(leaf, (GadgetStoreError, OSError)) for leaf in leaves):
                _report(leaves[0])
            raise

    return wrapper  # type: ignore[return-value]
