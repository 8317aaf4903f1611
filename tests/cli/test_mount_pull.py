"""Pull on access's fetch: an image the registry lacks is told apart from a deeper repository path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gadgetstore.cli.mount_pull import make_fetch
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.errors import NotFoundInRegistry
from gadgetstore.fusefs.pulls import Outcome
from tests.support.fakes import FakeServer, Reply, Request, serving

EXISTING = "org/team/repo"


def registry(req: Request) -> Reply:
    """No manifests at all; only EXISTING has tags, listed a page at a time with a relative next link."""
    if req.path.startswith(f"/v2/{EXISTING}/tags/list"):
        return Reply(200, {"Content-Type": "application/json",
                           "Link": f'</v2/{EXISTING}/tags/list?last=a&n=1>; rel="next"'},
                     b'{"name":"org/team/repo","tags":["a"]}')
    return Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')


@pytest.fixture
def server() -> Iterator[FakeServer]:
    yield from serving(registry)


async def test_a_missing_tag_of_an_existing_repository_is_absent_not_a_prefix(server: FakeServer,
                                                                               tmp_path: Path) -> None:
    options = TransferOptions(insecure_registries=frozenset({server.host}), retries=0)
    fetch = make_fetch(tmp_path / "store", options, None, timeout=30.0)
    with pytest.raises(NotFoundInRegistry):
        await fetch(f"{server.host}/{EXISTING}:missing", True)
    assert await fetch(f"{server.host}/org/team:repo", True) is Outcome.PREFIX
    listings = [r.path for r in server.requests if "/tags/list" in r.path]
    assert listings == [f"/v2/{EXISTING}/tags/list?n=1", "/v2/org/team/tags/list?n=1"]
