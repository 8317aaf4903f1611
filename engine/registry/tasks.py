"""Task groups whose failures read like plain exceptions.

trio wraps every nursery failure in an ``ExceptionGroup``. A transfer that fails because one blob
failed should raise that blob's error (so callers and the CLI see ``RegistryError`` and friends),
so when every failure is an ordinary ``Exception`` the first one is raised on its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio

from ..errors import exception_leaves


@contextlib.asynccontextmanager
async def task_group() -> AsyncIterator[trio.Nursery]:
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        leaves = exception_leaves(group)
        if leaves and all(isinstance(exc, Exception) for exc in leaves):
            raise leaves[0] from None
        raise
