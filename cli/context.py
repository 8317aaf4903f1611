"""What every command shares: the store location and turning engine errors into one-line messages."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.paths import default_store_root
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
            self._store = Store.open(self.root)
        return self._store


pass_app = click.make_pass_decorator(AppContext, ensure=True)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def user_errors(func: F) -> F:
    """Print engine and OS errors as ``Error: …`` with a non-zero exit, never as a traceback.

    A full disk that surfaces here as a bare ENOSPC struck before anything was recorded (a failed
    journal append is taken back); once a change is in the journal, the store raises
    :class:`~gadgetstore.engine.errors.IndexJsonBehind`, which says so.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GadgetStoreError as err:
            fail(str(err), err.exit_code)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                fail("no space left on device; nothing was changed in the store")
            fail(f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper  # type: ignore[return-value]
