"""Pulling through mirrors: order, fallback, verification, and no upstream secrets on a mirror.

The upstream is a real docker-registry; mirrors are a real ``gadgetstore serve`` (in a thread), a
:class:`FaultProxy` that corrupts what it forwards, and scripted fakes that record what they got.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.registry.authfile import Credentials
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.mirrors import SourceTally, Tallies, merge
from gadgetstore.engine.registry.mirrors_config import Mirror, RegistriesConfig
from gadgetstore.engine.registry.pull import PullResult, pull_images
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.engine.serve.support import RunningServer, start_server
from tests.support.fakes import FakeServer, FaultProxy, Reply, Request
from tests.support.images import graph_digests, make_gadget_image, verify_store
from tests.support.registry import TEST_PASSWORD, TEST_USER, RegistryServer, free_port, unique_repo

ITEMS = 6  # index, 2 manifests, 1 config, 2 layers


@dataclass
class Pushed:
    image: str
    src_root: Path
    upstream: RegistryServer


@pytest.fixture
async def pushed(anon_registry: RegistryServer, tmp_path: Path) -> Pushed:
    src_root = tmp_path / "src"
    image = anon_registry.ref(unique_repo("mirror"), "v1")
    make_gadget_image(Store.open(src_root), image)
    await push_image(Store.open(src_root), image, TransferOptions(insecure_registries=frozenset({anon_registry.host})))
    return Pushed(image, src_root, anon_registry)


@pytest.fixture
async def peer(pushed: Pushed) -> AsyncIterator[RunningServer]:
    """``gadgetstore serve`` on a store that already holds the image: a neighbour node."""
    server = await trio.to_thread.run_sync(start_server, pushed.src_root)
    try:
        yield server
    finally:
        await trio.to_thread.run_sync(server.stop)


def plain(address: str, **kw: object) -> Mirror:
    return Mirror(f"http://{address}", insecure=True, **kw)  # type: ignore[arg-type]


def options(upstream: RegistryServer | str, *mirrors: Mirror, **kw: object) -> TransferOptions:
    """The upstream (a registry, or the host:port of a closed one) in plain HTTP, behind ``mirrors``."""
    host = upstream if isinstance(upstream, str) else upstream.host
    config = RegistriesConfig({host: mirrors})
    return TransferOptions(insecure_registries=frozenset({host}), registries=config, **kw)  # type: ignore[arg-type]


async def pull(pushed: Pushed, dest: Path, opts: TransferOptions) -> PullResult:
    (result,) = await pull_images(Store.open(dest), [pushed.image], opts)
    assert result.error is None, result.error
    assert graph_digests(Store.open(dest), pushed.image) == graph_digests(Store.open(pushed.src_root), pushed.image)
    verify_store(dest)
    return result


def counts(sources: Tallies) -> dict[str, tuple[int, int]]:
    return {name: (t.items, t.failures) for name, t in sources.items()}


def not_found(_req: Request) -> Reply:
    return Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')


async def test_peer_serves_by_digest_upstream_resolves_the_tag(pushed: Pushed, peer: RunningServer,
                                                               tmp_path: Path) -> None:
    result = await pull(pushed, tmp_path / "dst", options(pushed.upstream, plain(peer.address)))
    assert counts(result.sources) == {f"upstream {pushed.upstream.host}": (1, 0),
                                      f"mirror http://{peer.address}": (ITEMS - 1, 0)}
    assert result.sources[f"mirror http://{peer.address}"].bytes == result.bytes_fetched - \
        result.sources[f"upstream {pushed.upstream.host}"].bytes


async def test_mirrors_in_order_then_upstream(pushed: Pushed, peer: RunningServer, tmp_path: Path) -> None:
    empty = FakeServer(not_found)
    try:
        result = await pull(pushed, tmp_path / "dst",
                            options(pushed.upstream, plain(empty.host), plain(peer.address)))
    finally:
        empty.close()
    # the first mirror was asked for each of the five digests, said 404, and the peer served them
    assert counts(result.sources) == {f"upstream {pushed.upstream.host}": (1, 0),
                                      f"mirror http://{empty.host}": (0, ITEMS - 1),
                                      f"mirror http://{peer.address}": (ITEMS - 1, 0)}
    assert len(empty.requests) == ITEMS - 1
    assert all("ns=" in r.path for r in empty.requests)  # the upstream is named, as containerd does


async def test_mirror_down_falls_back_and_is_skipped(pushed: Pushed, tmp_path: Path) -> None:
    down = plain(f"127.0.0.1:{free_port()}")
    result = await pull(pushed, tmp_path / "dst", options(pushed.upstream, down))
    assert counts(result.sources)[f"upstream {pushed.upstream.host}"] == (ITEMS, 0)
    # the two per-arch manifests are asked for at once; after that the mirror is skipped
    assert 1 <= result.sources[f"mirror {down.label}"].failures <= 2


async def test_mirror_404_falls_back(pushed: Pushed, tmp_path: Path) -> None:
    empty = FakeServer(not_found)
    try:
        result = await pull(pushed, tmp_path / "dst", options(pushed.upstream, plain(empty.host)))
    finally:
        empty.close()
    assert counts(result.sources)[f"upstream {pushed.upstream.host}"] == (ITEMS, 0)


@pytest.mark.parametrize("what", ["blobs", "manifests"])
async def test_lying_mirror_never_corrupts_the_store(pushed: Pushed, tmp_path: Path, what: str) -> None:
    liar = FaultProxy(pushed.upstream.host)
    liar.add(f"GET /v2/.*/{what}/sha256:", "corrupt", times=1000, at=10)  # same length, wrong bytes
    try:
        result = await pull(pushed, tmp_path / "dst", options(pushed.upstream, plain(liar.host)))
    finally:
        liar.close()
    mirror = result.sources[f"mirror http://{liar.host}"]
    assert mirror.failures >= 1
    assert result.sources[f"upstream {pushed.upstream.host}"].items >= 1
    assert mirror.items + result.sources[f"upstream {pushed.upstream.host}"].items == ITEMS


def air_gapped(pushed: Pushed, tag: str) -> tuple[str, str]:
    """An upstream on a closed port, and an image of it that only the peer's store holds."""
    gone = f"127.0.0.1:{free_port()}"
    image = f"{gone}/{unique_repo('airgap')}:{tag}"
    make_gadget_image(Store.open(pushed.src_root), image)
    return gone, image


def only_mirror(upstream: str, address: str, **kw: object) -> TransferOptions:
    return options(upstream, plain(address, resolve=True), **kw)


async def test_resolving_mirror_works_without_the_upstream(pushed: Pushed, peer: RunningServer,
                                                           tmp_path: Path) -> None:
    """Air-gapped: the upstream is unreachable, a ``resolve = true`` mirror answers tags too."""
    gone, image = air_gapped(pushed, "v2")
    (result,) = await pull_images(Store.open(tmp_path / "dst"), [image], only_mirror(gone, peer.address))
    assert result.error is None, result.error
    assert counts(result.sources) == {f"mirror http://{peer.address}": (ITEMS, 0)}
    verify_store(tmp_path / "dst")


async def test_air_gapped_pull_survives_one_bad_answer_from_its_mirror(pushed: Pushed, peer: RunningServer,
                                                                       tmp_path: Path) -> None:
    """The only mirror fails one blob request: it is tried again once the upstream fails too."""
    gone, image = air_gapped(pushed, "v3")
    flaky = FaultProxy(peer.address)
    flaky.add("GET /v2/.*/blobs/sha256:", "status", status=500, times=1)
    try:
        opts = only_mirror(gone, flaky.host, retries=1, backoff_base=0.01)
        (result,) = await pull_images(Store.open(tmp_path / "dst"), [image], opts)
    finally:
        flaky.close()
    assert result.error is None, result.error
    mirror, upstream = result.sources[f"mirror http://{flaky.host}"], result.sources[f"upstream {gone}"]
    assert (mirror.items, mirror.failures) == (ITEMS, 1)
    # the failed blob, and whatever came while the mirror was skipped, went to the closed port first
    assert upstream.items == 0 and upstream.failures >= 1
    assert graph_digests(Store.open(tmp_path / "dst"), image) == graph_digests(Store.open(pushed.src_root), image)
    verify_store(tmp_path / "dst")


async def push_behind_a_login(registry: RegistryServer, tmp_path: Path) -> tuple[str, dict[str, Credentials]]:
    """An image on ``registry`` that needs the test login to pull; returns it and the credentials."""
    src = Store.open(tmp_path / "src")
    image = registry.ref(unique_repo("secret"), "v1")
    make_gadget_image(src, image)
    creds = {registry.host: Credentials(TEST_USER, TEST_PASSWORD)}
    await push_image(src, image, TransferOptions(credentials=creds, plain_http=frozenset({registry.host})))
    return image, creds


async def test_upstream_credentials_never_reach_a_mirror(token_registry: RegistryServer, tmp_path: Path) -> None:
    """The upstream needs a login; the mirror asks for auth too, and gets none of the upstream's."""
    image, creds = await push_behind_a_login(token_registry, tmp_path)

    def mirror(req: Request) -> Reply:
        if req.path.startswith("/token"):
            return Reply(200, {"Content-Type": "application/json"}, json.dumps({"token": "mirror-token"}).encode())
        if req.headers.get("authorization") != "Bearer mirror-token":
            realm = f'Bearer realm="http://{fake.host}/token",service="mirror"'
            return Reply(401, {"WWW-Authenticate": realm})
        return not_found(req)

    fake = FakeServer(mirror)
    try:
        config = RegistriesConfig({token_registry.host: (plain(fake.host),)})
        opts = TransferOptions(credentials=creds, plain_http=frozenset({token_registry.host}), registries=config)
        (result,) = await pull_images(Store.open(tmp_path / "dst"), [image], opts)
    finally:
        fake.close()
    assert result.error is None, result.error
    # a plain-HTTP mirror that wants auth gets none at all, and is skipped after its first 401s
    assert 1 <= result.sources[f"mirror http://{fake.host}"].failures <= 2
    assert fake.requests and all("authorization" not in r.headers for r in fake.requests)
    assert result.sources[f"upstream {token_registry.host}"].items == ITEMS
    assert not any(TEST_USER in r.path or TEST_PASSWORD in r.path for r in fake.requests)
    verify_store(tmp_path / "dst")


def test_merge_adds_tallies() -> None:
    total: Tallies = {"a": SourceTally(1, 1, 0)}
    merge(total, {"a": SourceTally(2, 1, 1), "b": SourceTally(5, 2, 0)})
    assert total == {"a": SourceTally(3, 2, 1), "b": SourceTally(5, 2, 0)}


async def test_tls_mirror_trusts_its_own_ca_file_only(pushed: Pushed, htpasswd_registry: RegistryServer,
                                                      tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An https mirror is verified with system CAs plus its ``ca_file``, never the upstream's TLS settings.

    The htpasswd registry stands in for a TLS mirror: it wants a login, so even once TLS works the
    mirror is skipped (with a 401, not a certificate error) and the upstream serves everything.
    """
    assert htpasswd_registry.ca is not None
    url = f"https://{htpasswd_registry.host}"
    without = options(pushed.upstream, Mirror(url), ca_file=htpasswd_registry.ca.ca_cert)  # upstream's CA only
    with_ca = options(pushed.upstream, Mirror(url, ca_file=htpasswd_registry.ca.ca_cert))
    await pull(pushed, tmp_path / "a", without)
    assert "TLS certificate not trusted" in caplog.text
    caplog.clear()
    result = await pull(pushed, tmp_path / "b", with_ca)
    assert "TLS" not in caplog.text and "authentication required" in caplog.text
    assert result.sources[f"upstream {pushed.upstream.host}"].items == ITEMS


@pytest.mark.parametrize("trusting_first", [False, True])
async def test_two_mirrors_on_one_origin_each_trust_their_own_ca_file(
        pushed: Pushed, htpasswd_registry: RegistryServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        trusting_first: bool) -> None:
    """Trust follows the mirror's settings, not its origin: the mirror with the CA reaches the
    server (which wants a login: 401), the one without it fails TLS, in either order (neither
    gets the other's context, nor a connection the other verified)."""
    assert htpasswd_registry.ca is not None
    url = f"https://{htpasswd_registry.host}"
    trusting = Mirror(url, ca_file=htpasswd_registry.ca.ca_cert, path_prefix="trusting")
    plain_trust = Mirror(url, path_prefix="system-cas")
    mirrors = (trusting, plain_trust) if trusting_first else (plain_trust, trusting)
    result = await pull(pushed, tmp_path / "dst", options(pushed.upstream, *mirrors))
    messages = [r.getMessage() for r in caplog.records]
    skipped = {m.split(" skipped")[0]: m for m in messages if " skipped " in m}
    assert "authentication required" in skipped[f"mirror {url}/trusting"]
    assert "TLS certificate not trusted" in skipped[f"mirror {url}/system-cas"]
    assert result.sources[f"upstream {pushed.upstream.host}"].items == ITEMS
