"""Real clients against the server: skopeo (containers/image) and oras-py."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store
from tests.engine.serve.support import FULL_REPO, REPO, Fixture, RunningServer

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo (apt-get install skopeo)")


def graph_of(fixture_store: Fixture) -> set[Digest]:
    store = Store.open(fixture_store.root)
    return set(store.walk([store.resolve(f"{FULL_REPO}:latest")]))


@needs_skopeo
@pytest.mark.parametrize("name", [REPO, FULL_REPO])
def test_skopeo_copy_preserves_every_digest(
    server: RunningServer, fixture_store: Fixture, tmp_path: Path, name: str
) -> None:
    dest = tmp_path / "layout"
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
         "--retry-times=0", f"docker://{server.address}/{name}:latest", f"oci:{dest}:x"],
        check=True, capture_output=True, timeout=60,
    )
    index = json.loads((dest / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [str(fixture_store.index)]
    copied = {Digest.parse(f"sha256:{p.name}") for p in (dest / "blobs" / "sha256").iterdir()}
    assert copied == graph_of(fixture_store)
    for digest in copied:
        data = (dest / "blobs" / "sha256" / digest.hex).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest.hex


@needs_skopeo
def test_skopeo_inspect_and_list_tags(server: RunningServer, fixture_store: Fixture) -> None:
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{server.address}/{REPO}:latest"],
        check=True, capture_output=True, timeout=30,
    ).stdout
    assert Digest.of_bytes(raw) == fixture_store.index
    listed = subprocess.run(
        ["skopeo", "list-tags", "--tls-verify=false", f"docker://{server.address}/{REPO}"],
        check=True, capture_output=True, timeout=30,
    ).stdout
    assert fixture_store.sig_tag in json.loads(listed)["Tags"]


def test_oras_py_pulls_manifest_and_blob(server: RunningServer, fixture_store: Fixture, tmp_path: Path) -> None:
    import oras.client

    amd64, layer = fixture_store.amd64, fixture_store.amd64_layer
    client = oras.client.OrasClient(hostname=server.address, insecure=True)
    manifest = client.get_manifest(f"{server.address}/{REPO}@{amd64}")
    assert manifest["layers"][0]["digest"] == str(layer)
    out = tmp_path / "layer"
    client.download_blob(f"{server.address}/{REPO}:latest", str(layer), str(out))
    assert Digest.of_bytes(out.read_bytes()) == layer
    assert "latest" in client.get_tags(f"{server.address}/{REPO}")
    pulled = client.pull(target=f"{server.address}/{REPO}@{amd64}", outdir=str(tmp_path / "pulled"))
    assert [Digest.of_bytes(Path(p).read_bytes()) for p in pulled] == [layer]


def test_gadgetstore_pull_round_trip_with_range_chunks(
    server: RunningServer, fixture_store: Fixture, tmp_path: Path
) -> None:
    """Our own puller (engine/registry), fetching blobs as parallel Range chunks from the server."""
    dest = tmp_path / "pulled-store"
    ref = f"{server.address}/{REPO}:latest"
    chunk = 1000
    assert fixture_store.amd64_layer_size > 4 * chunk, "the ELF layers come in several Range chunks"
    result = subprocess.run(
        [sys.executable, "-m", "gadgetstore.cli.main", "--store", str(dest), "image", "pull",
         "--insecure-registries", server.address, "--range-threshold", str(chunk), ref],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    store = Store.open(dest)
    root = store.resolve(ref)
    assert root.digest == fixture_store.index
    pulled = set(store.walk([root]))
    assert pulled == graph_of(fixture_store)
    assert all(store.blobs.rehash(d) == d for d in pulled)


@needs_skopeo
@pytest.mark.parametrize(("image", "mirror_path", "expected"), [
    (f"ghcr.io/{REPO}:latest", "", "index"),  # the short name, as a mirror asks for it
    (f"example.com/{REPO}:other", "/example.com", "example"),  # a mirror location with the domain as a path
])
def test_skopeo_through_a_registries_conf_mirror(
    server: RunningServer, fixture_store: Fixture, tmp_path: Path, image: str, mirror_path: str, expected: str
) -> None:
    domain = image.split("/", 1)[0]
    conf = tmp_path / "registries.conf"
    conf.write_text(
        f'[[registry]]\nprefix = "{domain}"\nlocation = "{domain.split(".")[0]}.invalid"\n'
        f'[[registry.mirror]]\nlocation = "{server.address}{mirror_path}"\ninsecure = true\n'
    )
    raw = subprocess.run(
        ["skopeo", "--registries-conf", str(conf), "inspect", "--raw", f"docker://{image}"],
        check=True, capture_output=True, timeout=30,
    ).stdout
    assert Digest.of_bytes(raw) == (fixture_store.index if expected == "index" else fixture_store.example_index)
