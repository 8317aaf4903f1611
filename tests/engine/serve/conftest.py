"""A store with images, tags, signatures and referrers, and ``serve`` running on it in a thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.serve.support import Fixture, RunningServer, build_fixture_store, start_server
from tests.support.images import ArchivedImage


@pytest.fixture(scope="module")
def fixture_store(tmp_path_factory: pytest.TempPathFactory, gadget_image: ArchivedImage) -> Fixture:
    return build_fixture_store(tmp_path_factory.mktemp("serve") / "store", gadget_image)


@pytest.fixture(scope="module")
def server(fixture_store: Fixture) -> Iterator[RunningServer]:
    running = start_server(fixture_store.root)
    try:
        yield running
    finally:
        running.stop()
