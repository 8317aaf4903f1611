"""How a pull sorts an image graph into what the store has and what to fetch: a cold pull needs
no file system look-up (nothing was in the store when the batch began), a warm one still finds
every blob it has and fetches none of them again (real docker-registry behind a recording proxy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.manifests import VerifiedManifest
from gadgetstore.engine.registry.pull import Puller, pull_images
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.fakes import FaultProxy
from tests.support.images import make_gadget_image, pseudo_random, verify_store
from tests.support.registry import RegistryServer, unique_repo


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many descriptors each of the pull's store look-ups (a thread call) examined."""
    seen: list[int] = []
    real = Puller._expand

    def expand(self: Puller, kids: list[Descriptor], blobs: dict[Digest, Descriptor]
               ) -> tuple[list[VerifiedManifest], list[Descriptor]]:
        seen.append(len(kids))
        return real(self, kids, blobs)

    monkeypatch.setattr(Puller, "_expand", expand)
    return seen


async def test_a_cold_pull_looks_nothing_up_and_a_warm_one_fetches_nothing_twice(
        anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, lookups: list[int]) -> None:
    src = Store.open(tmp_path / "src")
    shared = pseudo_random(30_000, "plan-shared")
    repo = unique_repo("plan")
    images = [str(normalize(anon_registry.ref(repo, f"v{i}"))) for i in range(3)]
    for i, image in enumerate(images):
        make_gadget_image(src, image, seed=f"plan{i}", shared_layer=shared if i != 1 else None)
        await push_image(src, image, TransferOptions(insecure_registries=frozenset({anon_registry.host})))
    through = [image.replace(anon_registry.host, proxy.host, 1) for image in images]
    options = TransferOptions(insecure_registries=frozenset({proxy.host}))
    dst = Store.open(tmp_path / "dst")

    results = await pull_images(dst, through[:2], options)
    assert [r.error for r in results] == [None, None]
    assert lookups == []  # an empty store: every level sorted without a look-up

    proxy.requests.clear()
    (result,) = await pull_images(dst, through[2:], options)  # its layer came with image 0
    assert result.error is None
    assert lookups  # the shared layer was there when this batch began: looked up, found
    blob_gets = [path for method, path, _ in proxy.requests if method == "GET" and "/blobs/" in path]
    assert len(blob_gets) == 1  # only its own config: the shared layer was not fetched again
    verify_store(tmp_path / "dst")
