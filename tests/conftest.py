"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gadgetstore.engine.store import Store
from tests.support.images import ArchivedImage, build_demo_archive, read_archived_image
from tests.support.storecheck import unsound_stores
from tests.support.tempdirs import enter_session_root, leave_session_root

pytest_plugins = ["tests.support.registry"]  # real docker-registry fixtures for every directory

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
TRACE_OPEN_TAR = SHARED / "fixtures" / "ig" / "trace_open.tar"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    enter_session_root(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    leave_session_root(config)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Keep every test away from the developer's real store, auth files and proxies."""
    for name in ("GADGETSTORE_ROOT", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "GADGETSTORE_CRASH_AT",
                 "IG_SOURCE_PATH", "RUSTC",
                 "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # not /var/cache/gadgetstore as root
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    os.makedirs(tmp_path / "home", exist_ok=True)
    yield


@pytest.fixture(autouse=True)
def stores_left_sound(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """After the test: fsck finds no problem in any store it left under ``tmp_path``, unless it is
    marked ``leaves_damaged_store`` (see tests/support/storecheck.py)."""
    yield
    if request.node.get_closest_marker("leaves_damaged_store") is None:
        unsound = unsound_stores(tmp_path)
        assert not unsound, f"the test left damaged stores (mark it leaves_damaged_store if on purpose): {unsound}"


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_root: Path) -> Store:
    return Store.open(store_root)


@pytest.fixture(scope="session")
def gadget_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real gadget image the suite builds itself from ``examples/trace_demo`` (once per session)."""
    return build_demo_archive(tmp_path_factory.mktemp("demo-image"))


@pytest.fixture(scope="session")
def gadget_image(gadget_tar: Path) -> ArchivedImage:
    """What ``gadget_tar`` holds (reference, digests, sizes, ELFs), read from the tar: never write these down."""
    return read_archived_image(gadget_tar)


def require_ig_export() -> Path:
    """The real ``ig image export``; tests of compatibility with ig skip with this reason without it."""
    if not TRACE_OPEN_TAR.is_file():
        pytest.skip(f"needs {TRACE_OPEN_TAR} (a real `ig image export`), which is not beside this checkout")
    return TRACE_OPEN_TAR


@pytest.fixture
def trace_open_tar() -> Path:
    """Only for tests of compatibility with ig: skipped (failed in CI) when the export is absent."""
    return require_ig_export()


@pytest.fixture(scope="session")
def ig_export_image() -> ArchivedImage:
    """What the real ``ig image export`` holds; skipped (failed in CI) when it is absent."""
    return read_archived_image(require_ig_export())


IG_EXPORT_FIXTURES = {"trace_open_tar", "ig_export_image"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the real ig export, so that ``-m ig_export`` selects (and counts) them."""
    for item in items:
        if IG_EXPORT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ig_export)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI every dependency is installed, so a skip means a missing install step: fail instead."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("GADGETSTORE_REQUIRE_ALL") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped where every dependency must be present: {report.longrepr}"
