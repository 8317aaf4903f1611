"""``image pull --from-file`` / ``--all-tags``, the per-source summary, and tag-list paging."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import Session, TransferOptions
from gadgetstore.engine.registry.errors import RegistryError
from gadgetstore.engine.registry.paging import next_link
from gadgetstore.engine.registry.taglist import list_tags
from gadgetstore.engine.store import Store
from tests.engine.serve.support import RunningServer, start_server
from tests.support.cli import run_cli as run
from tests.support.fakes import FakeServer, Reply, Request
from tests.support.images import make_gadget_image, verify_store
from tests.support.registry import RegistryServer, unique_repo

SIG_TAG = "sha256-" + "ab" * 32 + ".sig"


def push(registry: RegistryServer, src_root: Path, images: list[str]) -> None:
    for image in images:
        make_gadget_image(Store.open(src_root), image, seed=image)
        code, _, err = run("--store", str(src_root), "image", "push", image, "--insecure-registries", registry.host)
        assert code == 0, err


@pytest.fixture
def repo_with_tags(anon_registry: RegistryServer, tmp_path: Path) -> tuple[str, list[str]]:
    repo = f"{anon_registry.host}/{unique_repo('bulk')}"
    images = [f"{repo}:v{i}" for i in range(5)] + [f"{repo}:{SIG_TAG}"]
    push(anon_registry, tmp_path / "src", images)
    return repo, images[:5]


def test_from_file_with_comments(repo_with_tags: tuple[str, list[str]], anon_registry: RegistryServer,
                                 tmp_path: Path) -> None:
    _repo, images = repo_with_tags
    listing = tmp_path / "list.txt"
    listing.write_text(f"# gadgets for the fleet\n\n{images[0]}\n  {images[1]}   # pinned\n{images[0]}\n")
    dst = tmp_path / "dst"
    code, _, err = run("--store", str(dst), "image", "pull", "--from-file", str(listing), images[2],
                       "--insecure-registries", anon_registry.host)
    assert code == 0, err
    assert sorted(Store.open(dst).tags()) == sorted(str(normalize(i)) for i in images[:3])
    assert err.count("Successfully pulled") == 3  # the duplicate line is pulled once
    lines = err.splitlines()
    assert lines[-2].startswith("Fetched ") and lines[-2].endswith("for 3 image(s):")
    assert lines[-1].startswith(f"  upstream {anon_registry.host}: ") and "18 item(s)" in lines[-1]  # 3 × 6
    verify_store(dst)


def test_from_file_names_the_bad_line(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("trace_open\nNot A Reference\n")
    code, _, err = run("--store", str(tmp_path / "s"), "image", "pull", "--from-file", str(listing))
    assert code == 1 and err.startswith(f"Error: {listing}:2: ")
    assert not (tmp_path / "s").exists() or not Store.open(tmp_path / "s").tags()


def test_from_file_on_stdin(repo_with_tags: tuple[str, list[str]], anon_registry: RegistryServer,
                            tmp_path: Path) -> None:
    _repo, images = repo_with_tags
    code, _, err = run("--store", str(tmp_path / "dst"), "image", "pull", "--from-file", "-",
                       "--insecure-registries", anon_registry.host, input=f"{images[4]}\n")
    assert code == 0, err
    assert Store.open(tmp_path / "dst").tags() == [str(normalize(images[4]))]


def test_all_tags_pages_through_and_skips_signature_tags(repo_with_tags: tuple[str, list[str]],
                                                         anon_registry: RegistryServer, tmp_path: Path) -> None:
    repo, images = repo_with_tags
    dst = tmp_path / "dst"
    code, _, err = run("--store", str(dst), "image", "pull", repo, "--all-tags", "--tags-page-size", "2",
                       "--insecure-registries", anon_registry.host)
    assert code == 0, err
    assert "Skipping 1 signature/attestation tag(s)" in err
    assert sorted(Store.open(dst).tags()) == sorted(str(normalize(i)) for i in images)
    verify_store(dst)


def test_all_tags_refuses_a_tag(tmp_path: Path) -> None:
    code, _, err = run("--store", str(tmp_path / "s"), "image", "pull", "127.0.0.1:1/x/y:v1", "--all-tags")
    assert code == 1 and "--all-tags takes repositories without a tag or digest" in err


def test_nothing_to_pull_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("--store", str(tmp_path / "s"), "image", "pull")
    assert code == 2 and "give IMAGES, --from-file LIST, or both" in err


@pytest.fixture
def peer(repo_with_tags: tuple[str, list[str]], tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path / "src")  # the pushing store: a neighbour that has every image
    try:
        yield server
    finally:
        server.stop()


def test_summary_per_source_with_a_serve_peer(repo_with_tags: tuple[str, list[str]], anon_registry: RegistryServer,
                                              peer: RunningServer, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _repo, images = repo_with_tags
    config = tmp_path / "registries.toml"
    config.write_text(f'[[registry."{anon_registry.host}".mirror]]\nurl = "http://{peer.address}"\n'
                      "insecure = true\n")
    monkeypatch.setenv("GADGETSTORE_REGISTRIES_CONFIG", str(config))
    dst = tmp_path / "dst"
    code, _, err = run("--store", str(dst), "image", "pull", *images[:2], "--insecure-registries", anon_registry.host)
    assert code == 0, err
    summary = err.splitlines()[-3:]
    assert summary[0].startswith("Fetched ") and summary[0].endswith("for 2 image(s):")
    assert summary[1].startswith(f"  mirror http://{peer.address}: ") and "10 item(s)" in summary[1]
    assert summary[2].startswith(f"  upstream {anon_registry.host}: ") and "2 item(s)" in summary[2]  # the tags
    verify_store(dst)


def test_a_missing_registries_config_is_an_error(tmp_path: Path) -> None:
    code, _, err = run("--store", str(tmp_path / "s"), "image", "pull", "trace_open",
                       "--registries-config", str(tmp_path / "none.toml"))
    assert code == 1 and "does not exist" in err


def test_next_link_parsing() -> None:
    base = "http://r.example/v2/a/tags/list?n=2"
    assert next_link(['</v2/a/tags/list?n=2&last=b>; rel="next"'], base) == "http://r.example/v2/a/tags/list?n=2&last=b"
    assert next_link(['<http://r.example/p2>; rel="prev", <http://r.example/p3>; rel=next'], base) == \
        "http://r.example/p3"
    assert next_link([], base) is None and next_link(['<x>; rel="prev"'], base) is None


def _paging_fake(next_url: str) -> FakeServer:
    """Every page links to ``next_url`` (``{n}`` is replaced by a request counter)."""
    served = itertools.count()

    def handler(req: Request) -> Reply:
        link = next_url.format(n=next(served))
        return Reply(200, {"Content-Type": "application/json", "Link": f'<{link}>; rel="next"'},
                     b'{"name":"a/b","tags":["v1"]}')
    return FakeServer(handler)


async def test_paging_stays_on_the_registry_and_is_bounded() -> None:
    elsewhere = _paging_fake("http://127.0.0.1:1/v2/a/b/tags/list")
    looping = _paging_fake("/v2/a/b/tags/list?n=1000&last=v1")
    endless = _paging_fake("/v2/a/b/tags/list?n=7&last=v{n}")
    try:
        hosts = frozenset({elsewhere.host, looping.host, endless.host})
        async with Session(TransferOptions(insecure_registries=hosts)) as s:
            with pytest.raises(RegistryError, match="another origin"):
                await list_tags(s, normalize(f"{elsewhere.host}/a/b"))
            with pytest.raises(RegistryError, match="repeats an earlier page"):
                await list_tags(s, normalize(f"{looping.host}/a/b"))
            with pytest.raises(RegistryError, match="more than 3 pages"):
                await list_tags(s, normalize(f"{endless.host}/a/b"), page_size=7, max_pages=3)
    finally:
        await trio.to_thread.run_sync(elsewhere.close)
        await trio.to_thread.run_sync(looping.close)
        await trio.to_thread.run_sync(endless.close)
