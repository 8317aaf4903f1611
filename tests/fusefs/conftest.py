"""Fixtures for the FUSE tests: a skip only where FUSE truly cannot work, and no stale mounts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import use_real_elves
from .mounting import fuse_unavailable_reason, sweep_stale_mounts

_REASON = fuse_unavailable_reason()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _REASON is None:
        return
    for item in items:
        if item.get_closest_marker("fuse") is not None:
            item.add_marker(pytest.mark.skip(reason=_REASON))


@pytest.fixture(scope="session", autouse=True)
def no_stale_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Sweep dead mounts of earlier runs at the start, and every mount of this run at the end."""
    base = tmp_path_factory.getbasetemp()
    if _REASON is None:
        sweep_stale_mounts(base.parent, dead_only=True)
    yield
    if _REASON is None:
        leftovers = sweep_stale_mounts(base, dead_only=False)
        assert not leftovers, f"tests left mounts behind: {leftovers}"


@pytest.fixture(scope="session", autouse=True)
def real_elves(gadget_tar: Path) -> None:
    """``make_gadget`` images carry the real ELFs of the suite's own image."""
    use_real_elves(gadget_tar)


@pytest.fixture
def mount_dir(tmp_path: Path) -> Path:
    path = tmp_path / "mnt"
    os.makedirs(path, exist_ok=True)
    return path
