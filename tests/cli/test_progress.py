"""The pull status line: pure rendering, in-place redraws on a TTY, and nothing but plain lines otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from gadgetstore.cli import progress
from gadgetstore.cli.main import cli
from gadgetstore.cli.progress import PullStatus, PullTally, render
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.images import make_gadget_image
from tests.support.registry import RegistryServer, unique_repo


def test_render() -> None:
    tally = PullTally(total=10, started=5, done=3, failed=1, bytes_fetched=12_345_678)
    assert render(tally, 7.9, 200) == "3/10 images, 12.3 MB fetched, 2 in progress, 1 failed, 7s"
    assert render(PullTally(total=2, started=2, done=2), 0.0, 200) == "2/2 images, 0 B fetched, 0s"
    narrow = render(tally, 7.9, 20)
    assert narrow == "3/10 images, 12.3 M" and len(narrow) == 19  # never as wide as the terminal: no wrap


def test_status_redraws_in_place_and_clears() -> None:
    out: list[str] = []
    now = [0.0]
    status = PullStatus(2, out.append, enabled=True, clock=lambda: now[0], width=lambda: 80)
    status.start()
    status.echo("Pulling a...")
    now[0] = 3.0
    status.add_bytes(2048)
    status.done(failed=False)
    status.echo("Successfully pulled a")
    status.close()
    screen = "".join(out)
    assert out[:2] == ["Pulling a...\n", "\r0/2 images, 0 B fetched, 1 in progress, 0s"]
    assert "\r1/2 images, 2.0 kB fetched, 3s" in out
    lines = [_terminal_view(chunk) for chunk in screen.split("\n")]
    assert lines == ["Pulling a...", "Successfully pulled a", ""]  # the status line is gone at the end
    status.echo("summary")
    assert out[-1] == "summary\n"  # after close: plain lines only


def test_disabled_status_writes_plain_lines() -> None:
    out: list[str] = []
    status = PullStatus(1, out.append, enabled=False)
    status.start()
    status.echo("Pulling a...")
    status.add_bytes(10)
    status.done(failed=True)
    status.echo("Error: pulling a: nope")
    status.close()
    assert out == ["Pulling a...\n", "Error: pulling a: nope\n"]


async def test_ticks_redraw_while_work_runs(autojump_clock: trio.abc.Clock) -> None:
    out: list[str] = []
    status = PullStatus(1, out.append, enabled=True, width=lambda: 80)
    status.start()

    async def work() -> str:
        await trio.sleep(0.3)
        return "result"

    assert await progress.with_ticks(status, work, interval=0.05) == "result"
    assert len(out) >= 3 and all(chunk.startswith("\r0/1 images") for chunk in out)
    quiet = PullStatus(1, out.append, enabled=False)
    out.clear()
    assert await progress.with_ticks(quiet, work, interval=0.05) == "result"
    assert out == []


async def test_ticks_pass_errors_through_unwrapped(autojump_clock: trio.abc.Clock) -> None:
    """The CLI's ``user_errors`` must see the engine's own exception, not an ExceptionGroup."""
    status = PullStatus(1, lambda _text: None, enabled=True, width=lambda: 80)

    async def work() -> None:
        await trio.sleep(0.01)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await progress.with_ticks(status, work, interval=0.005)


def _terminal_view(text: str) -> str:
    """What a terminal shows for one line: each ``\\r`` returns to column 0 and overwrites."""
    cells: list[str] = []
    col = 0
    for ch in text:
        if ch == "\r":
            col = 0
            continue
        if col < len(cells):
            cells[col] = ch
        else:
            cells.append(ch)
        col += 1
    return "".join(cells).rstrip()


def _publish(server: RegistryServer, tmp_path: Path, count: int) -> list[str]:
    src = Store.open(tmp_path / "src")
    repo = unique_repo("progress")
    images = [server.ref(repo, f"v{i}") for i in range(count)]
    options = TransferOptions(insecure_registries=frozenset({server.host}))
    for image in images:
        make_gadget_image(src, image)
        trio.run(push_image, src, image, options)
    return images


def test_pull_without_tty_has_no_carriage_returns(anon_registry: RegistryServer, tmp_path: Path) -> None:
    images = _publish(anon_registry, tmp_path, 2)
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "dst"), "image", "pull", *images,
                                      "--insecure-registries", anon_registry.host], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "\r" not in result.stderr and "\r" not in result.stdout
    assert "images," not in result.stderr
    assert sum(line.startswith("Successfully pulled ") for line in result.stderr.splitlines()) == 2


def test_pull_on_a_tty_shows_and_clears_the_status(anon_registry: RegistryServer, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "stderr_is_tty", lambda: True)
    images = _publish(anon_registry, tmp_path, 2)
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "dst"), "image", "pull", *images,
                                      "--insecure-registries", anon_registry.host], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    err = result.stderr
    assert "\r2/2 images, " in err
    assert " kB fetched" in err or " MB fetched" in err
    shown = [_terminal_view(line) for line in err.split("\n")]
    assert not any("images," in line for line in shown)  # every status draw was blanked before a message
    assert sum(line.startswith("Successfully pulled ") for line in shown) == 2
    assert shown[-1] == ""
