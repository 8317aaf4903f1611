"""GroupCommit: items that arrive during a commit share the next one; every item is committed
once or withdrawn, and a caller never walks away from an item its batch is still working on."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from gadgetstore.engine.ingest.groupcommit import GroupCommit


class _Recorder:
    """A commit function that records its batches; it can be made to wait or to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_on: int | None = None

    def __call__(self, batch: list[int]) -> None:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(batch)
        if self.fail_on is not None and self.fail_on in batch:
            raise OSError(5, "disk said no")


async def _hold_a_batch(nursery: trio.Nursery, recorder: _Recorder,
                        submit: Callable[[int], Awaitable[None]]) -> None:
    """Start item 0's commit and hold it inside the commit function: later items queue behind it."""
    recorder.gate.clear()
    nursery.start_soon(submit, 0)
    await _wait_until(recorder.entered)


async def _wait_until(condition: threading.Event) -> None:
    """The commit function (in a worker thread) has started."""
    assert await trio.to_thread.run_sync(condition.wait, 10), "the commit never started"


async def test_items_arriving_during_a_commit_share_the_next_one() -> None:
    recorder = _Recorder()
    group = GroupCommit(recorder)
    async with trio.open_nursery() as nursery:
        await _hold_a_batch(nursery, recorder, group.submit)
        for i in range(1, 6):
            nursery.start_soon(group.submit, i)
        await trio.testing.wait_all_tasks_blocked()
        recorder.gate.set()
    assert recorder.batches[0] == [0]
    assert sorted(recorder.batches[1]) == [1, 2, 3, 4, 5]  # all five in one commit, not five commits
    assert len(recorder.batches) == 2


async def test_a_failed_commit_fails_every_item_in_it_and_only_those() -> None:
    recorder = _Recorder()
    recorder.fail_on = 3
    group = GroupCommit(recorder)
    outcomes: dict[int, str] = {}

    async def submit(i: int) -> None:
        try:
            await group.submit(i)
            outcomes[i] = "ok"
        except OSError:
            outcomes[i] = "failed"

    async with trio.open_nursery() as nursery:
        await _hold_a_batch(nursery, recorder, submit)
        for i in (1, 2, 3):
            nursery.start_soon(submit, i)
        await trio.testing.wait_all_tasks_blocked()
        recorder.gate.set()
    assert outcomes == {0: "ok", 1: "failed", 2: "failed", 3: "failed"}
    recorder.batches.clear()
    await group.submit(4)  # the next batch starts clean
    assert recorder.batches == [[4]]


async def test_a_caller_cancelled_before_its_batch_withdraws_its_item() -> None:
    recorder = _Recorder()
    group = GroupCommit(recorder)
    async with trio.open_nursery() as nursery:
        await _hold_a_batch(nursery, recorder, group.submit)
        with trio.move_on_after(0.05) as scope:
            await group.submit(1)  # waits for the lock behind item 0's commit
        assert scope.cancelled_caught
        recorder.gate.set()
    await group.submit(2)
    assert [item for batch in recorder.batches for item in batch] == [0, 2]  # 1 was never committed


async def test_a_cancelled_caller_waits_for_the_batch_that_took_its_item() -> None:
    recorder = _Recorder()
    group = GroupCommit(recorder)
    returned = trio.Event()

    async def cancelled_waiter(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await group.submit(1)
        returned.set()

    async with trio.open_nursery() as nursery:
        await _hold_a_batch(nursery, recorder, group.submit)
        scope = await nursery.start(cancelled_waiter)
        await trio.testing.wait_all_tasks_blocked()
        recorder.entered.clear()
        recorder.gate.set()  # batch [0] ends; the next batch takes item 1 ...
        recorder.gate.clear()
        await _wait_until(recorder.entered)  # ... and holds it
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()  # the cancelled caller has left, or waits again
        assert not returned.is_set(), "the caller left while its batch was still committing its item"
        recorder.gate.set()
    assert returned.is_set()
    assert recorder.batches == [[0], [1]]


@pytest.mark.parametrize("count", [1, 40])
async def test_every_item_is_committed_exactly_once(count: int) -> None:
    recorder = _Recorder()
    group = GroupCommit(recorder)
    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(group.submit, i)
    committed = [item for batch in recorder.batches for item in batch]
    assert sorted(committed) == list(range(count))


async def test_a_leader_cancelled_as_it_takes_the_lock_still_commits_its_batch() -> None:
    """The next leader is cancelled in the same tick that hands it the lock: its batch (its own
    item and another task's) must still be committed, and the other task must not get its
    Cancelled."""
    recorder = _Recorder()
    group = GroupCommit(recorder)
    await group.lock.acquire()  # keep batches out while both items queue up
    finished: list[int] = []

    async def submit(i: int, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await group.submit(i)
            finished.append(i)

    async with trio.open_nursery() as nursery:
        leader = await nursery.start(submit, 1)
        await nursery.start(submit, 2)
        await trio.testing.wait_all_tasks_blocked()
        group.lock.release()  # the lock goes to the first waiter ...
        leader.cancel()  # ... whose cancellation lands before it starts the commit
    assert recorder.batches == [[1, 2]]
    assert sorted(finished) == [1, 2]  # both items are in: nobody got a Cancelled meant for another task
