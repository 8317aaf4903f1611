"""A one-line pull status for terminals, rewritten in place with ``\\r``.

Only drawn when stderr is a TTY: logs and pipes get exactly the ``Pulling …``/``Successfully pulled …``
lines, never carriage returns. Bytes advance when an image finishes (``PullResult.bytes_fetched``),
because the pull engine reports nothing finer; a timer redraws so the elapsed time still moves.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import click

from gadgetstore.engine.humanize import human_bytes  # the units of the per-source summary printed right after


@dataclass
class PullTally:
    """What the status line shows; updated from the pull's start/done/bytes callbacks."""

    total: int
    started: int = 0
    done: int = 0
    failed: int = 0
    bytes_fetched: int = 0


def render(tally: PullTally, elapsed: float, width: int) -> str:
    """The status text, cut to ``width - 1`` columns: a line that wraps cannot be rewritten with ``\\r``."""
    parts = [f"{tally.done}/{tally.total} images", f"{human_bytes(tally.bytes_fetched)} fetched"]
    active = tally.started - tally.done
    if active > 0:
        parts.append(f"{active} in progress")
    if tally.failed:
        parts.append(f"{tally.failed} failed")
    parts.append(f"{int(elapsed)}s")
    return ", ".join(parts)[:max(0, width - 1)]


class PullStatus:
    """Interleaves the status line with ordinary message lines: clear, print the message, redraw."""

    def __init__(self, total: int, write: Callable[[str], None], enabled: bool,
                 clock: Callable[[], float] = time.monotonic,
                 width: Callable[[], int] = lambda: shutil.get_terminal_size((80, 24)).columns) -> None:
        self.tally = PullTally(total)
        self._write = write
        self.enabled = enabled
        self._clock = clock
        self._width = width
        self._began = clock()
        self._shown = 0  # length of the line on screen, to blank it without relying on ANSI codes

    def start(self) -> None:
        """Count an image as started; the redraw waits for the next :meth:`echo` or :meth:`refresh`."""
        self.tally.started += 1

    def add_bytes(self, count: int) -> None:
        """Count bytes as they arrive; the redraw waits for the next tick."""
        self.tally.bytes_fetched += count

    def done(self, failed: bool) -> None:
        self.tally.done += 1
        self.tally.failed += int(failed)

    def refresh(self) -> None:
        self._draw()

    def echo(self, line: str) -> None:
        """Print a full message line above the status line."""
        self._clear()
        self._write(line + "\n")
        self._draw()

    def close(self) -> None:
        """Blank the status line so the final messages start on a clean line."""
        self._clear()
        self.enabled = False

    def _draw(self) -> None:
        if not self.enabled:
            return
        text = render(self.tally, self._clock() - self._began, self._width())
        self._write("\r" + text + " " * max(0, self._shown - len(text)))
        self._shown = len(text)

    def _clear(self) -> None:
        if self.enabled and self._shown:
            self._write("\r" + " " * self._shown + "\r")
            self._shown = 0


T = TypeVar("T")


async def with_ticks(status: PullStatus, work: Callable[[], Awaitable[T]], interval: float = 0.5) -> T:
    """Run ``work`` redrawing every ``interval`` s, so the clock moves while one large image downloads."""
    if not status.enabled:
        return await work()
    import trio  # running here means trio is loaded already: no start-up cost

    async def tick() -> None:
        while True:
            await trio.sleep(interval)
            status.refresh()

    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        try:
            value = await work()
        except BaseException as exc:  # re-raised below, outside the nursery: not wrapped in an ExceptionGroup
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return value


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def stderr_status(total: int) -> PullStatus:
    """The status of a pull of ``total`` images on stderr, drawn only if stderr is a terminal."""
    return PullStatus(total, lambda text: click.echo(text, err=True, nl=False), stderr_is_tty())
