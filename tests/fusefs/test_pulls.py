"""Pull on access without a mount: which paths are images, and one fetch per image."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gadgetstore.engine.errors import StoreError
from gadgetstore.engine.reference import OFFICIAL_PREFIX
from gadgetstore.fusefs.pulls import REMEMBER, Candidate, OnAccess, Outcome, candidate

OFFICIAL = ("ghcr.io", "inspektor-gadget", "gadget")


@pytest.mark.parametrize(("path", "expected"), [
    (("trace_tcp",), Candidate(None, True)),
    (("trace_tcp", "v0.48.0"), Candidate(f"{OFFICIAL_PREFIX}trace_tcp:v0.48.0", False)),  # <name>/<tag>
    (("trace_tcp", "v1", "x"), None),
    (("Trace_tcp",), None),  # not lower case: read as a registry name (as ig does), and not a valid one
    (("trace_tcp", ".git"), None),
    (("localhost:5000",), Candidate(None, True)),
    (("localhost:5000", "repo"), Candidate(None, True)),  # no tag yet: nothing to pull
    (("localhost:5000", "repo", "v1"), Candidate("localhost:5000/repo:v1", True)),
    (("localhost:5000", "org", "repo", "v1"), Candidate("localhost:5000/org/repo:v1", True)),
    (("localhost:5000", "repo", "V1"), Candidate("localhost:5000/repo:V1", False)),  # a tag, never a repository
    (("localhost:5000", "repo", ".hidden"), None),
    (("localhost:5000", "UPPER", "v1"), None),
    (("bad..registry",), None),
    (("Registry.example",), Candidate(None, True)),
    (OFFICIAL[:1], Candidate(None, True)),
    (OFFICIAL[:2], Candidate(None, True)),  # on the way to the official gadgets: nothing is tried
    (OFFICIAL, Candidate(None, True)),
    ((*OFFICIAL, "trace_tcp"), Candidate(None, True)),
    ((*OFFICIAL, "trace_tcp", "v1"), Candidate("ghcr.io/inspektor-gadget/gadget/trace_tcp:v1", False)),
    (("ghcr.io", "other", "repo"), Candidate(None, True)),  # ig reads ghcr.io/other:repo as an official gadget
    (("ghcr.io", "org", "repo", "v1"), Candidate("ghcr.io/org/repo:v1", True)),
])
def test_which_paths_are_images(path: tuple[str, ...], expected: Candidate | None) -> None:
    assert candidate(path) == expected


class Registry:
    """A fetch that counts the calls and, for references in ``held``, waits until the test releases them."""

    def __init__(self, *held: str) -> None:
        self.calls: list[str] = []
        self.held = {image: trio.Event() for image in held}
        self.answers: dict[str, Outcome | Exception] = {}

    async def fetch(self, image: str, may_be_prefix: bool) -> Outcome:
        self.calls.append(image)
        if image in self.held:
            await self.held[image].wait()
        answer = self.answers.get(image, Outcome.PULLED)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_one_fetch_however_many_wait_and_different_images_at_once() -> None:
    registry = Registry("r/a:v1", "r/b:v1")
    pulls = OnAccess(registry.fetch)
    a, b = Candidate("r/a:v1", True), Candidate("r/b:v1", True)
    results: list[tuple[str, Outcome]] = []

    async def look(found: Candidate) -> None:
        results.append((found.reference or "", await pulls.resolve(found)))

    async with trio.open_nursery() as nursery:
        for found in (a, a, b, a):
            nursery.start_soon(look, found)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(registry.calls) == ["r/a:v1", "r/b:v1"]  # both fetches under way at once, one each
        registry.held["r/b:v1"].set()
        await trio.testing.wait_all_tasks_blocked()
        assert results == [("r/b:v1", Outcome.PULLED)]  # b did not wait for a
        registry.held["r/a:v1"].set()
    assert sorted(results) == [("r/a:v1", Outcome.PULLED)] * 3 + [("r/b:v1", Outcome.PULLED)]
    assert sorted(registry.calls) == ["r/a:v1", "r/b:v1"]  # the waiters were given the first fetch's outcome


async def test_failures_are_absent_remembered_for_a_while_then_asked_again(autojump_clock: trio.abc.Clock) -> None:
    registry = Registry()
    registry.answers = {"r/a:v1": StoreError("boom"), "r/b:v1": Outcome.PREFIX, "r/c:v1": ValueError("bug")}
    pulls = OnAccess(registry.fetch)
    assert await pulls.resolve(Candidate("r/a:v1", True)) is Outcome.ABSENT
    assert await pulls.resolve(Candidate("r/b:v1", True)) is Outcome.PREFIX
    assert await pulls.resolve(Candidate("r/b:v1", False)) is Outcome.PREFIX  # remembered as it was
    assert await pulls.resolve(Candidate("r/c:v1", True)) is Outcome.ABSENT  # a bug costs the lookup only
    assert await pulls.resolve(Candidate(None, True)) is Outcome.PREFIX  # nothing to fetch
    assert registry.calls == ["r/a:v1", "r/b:v1", "r/c:v1"]
    await trio.sleep(REMEMBER + 0.1)
    registry.answers["r/a:v1"] = Outcome.PULLED
    assert await pulls.resolve(Candidate("r/a:v1", True)) is Outcome.PULLED
    assert await pulls.resolve(Candidate("r/d:v1", False)) is Outcome.PULLED
    assert registry.calls[3:] == ["r/a:v1", "r/d:v1"]


async def test_a_prefix_answer_for_a_path_that_cannot_be_one_is_absent() -> None:
    registry = Registry()
    registry.answers["trace_x:v1"] = Outcome.PREFIX
    assert await OnAccess(registry.fetch).resolve(Candidate("trace_x:v1", False)) is Outcome.ABSENT
