"""``--timeout DURATION``: one deadline for a whole network command, over every ``trio.run`` it makes.

When it passes, everything under way is cancelled (a ranged download keeps its partial file in
``ingest/`` for the next run; nothing is tagged that was not complete), and the command fails
with exit code 124, as timeout(1) does, naming what was still in flight. trio is imported only
when a command runs something (``image inspect`` without a pull does not need it).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.humanize import format_duration, parse_duration
from gadgetstore.engine.registry.inflight import InFlight

T = TypeVar("T")
TIMEOUT_EXIT_CODE = 124


class CommandTimedOut(GadgetStoreError):
    exit_code = TIMEOUT_EXIT_CODE


class Duration(click.ParamType):
    """``90s``, ``5m``, ``1h30m``, ``500ms`` or a number of seconds, as seconds (a float); with
    ``allow_zero``, zero (``0``, ``0s``, ``0m``…) too."""

    name = "duration"

    def __init__(self, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value), allow_zero=self.allow_zero)
        except ValueError as err:
            self.fail(str(err), param, ctx)


timeout_option = click.option(
    "--timeout", type=Duration(), metavar="DURATION",
    help="Give up after DURATION (90s, 5m, 1h30m) with exit code 124, naming what was still in flight; "
         "a re-run resumes.")


class CommandDeadline:
    """Runs a command's async steps until ``timeout`` seconds after it was made (None: no bound).

    :attr:`in_flight` goes into the command's ``TransferOptions``: the pool lists its requests
    there, and the moment the deadline passes they are named, before cancelling removes them.
    """

    def __init__(self, timeout: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.in_flight = InFlight()
        self._clock = clock
        self._end = clock() + timeout if timeout is not None else None

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Ctrl-C (and SIGTERM) arrive as a KeyboardInterrupt at a checkpoint, like a cancellation,
        never in the middle of a line: raised anywhere, it can leave a coroutine never awaited (a
        warning on stderr) or a cleanup half done."""
        import trio

        return trio.run(self.bounded, fn, *args, restrict_keyboard_interrupt_to_checkpoints=True)

    async def bounded(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)``, cancelled when the deadline passes (then :class:`CommandTimedOut`)."""
        if self._end is None or self.timeout is None:
            return await fn(*args)
        import trio

        from gadgetstore.engine.registry.tasks import task_group

        timeout = self.timeout
        remaining = self._end - self._clock()
        expired: list[str] = []
        with trio.CancelScope() as everything:

            async def watch() -> None:
                await trio.sleep(max(0.0, remaining))
                expired.append(self.in_flight.describe())
                everything.cancel()

            async with task_group() as nursery:
                nursery.start_soon(watch)
                try:
                    return await fn(*args)
                finally:
                    nursery.cancel_scope.cancel()
        waiting = f"; still in flight: {expired[0]}" if expired and expired[0] else ""
        raise CommandTimedOut(f"timed out after {format_duration(timeout)}{waiting}")
