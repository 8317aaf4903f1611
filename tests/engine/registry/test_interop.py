"""Other tools read what we push, and we read what they push."""

from __future__ import annotations

import json
import os
from pathlib import Path

import trio

from gadgetstore.engine.digest import Digest
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.pull import pull_image
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.images import graph_digests, make_gadget_image, verify_store
from tests.support.registry import RegistryServer, unique_repo


def _opts(server: RegistryServer) -> TransferOptions:
    return TransferOptions(insecure_registries=frozenset({server.host}))


async def _skopeo(*args: str) -> None:
    result = await trio.run_process(["skopeo", *args], capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()


async def test_skopeo_copies_what_we_push(anon_registry: RegistryServer, tmp_path: Path) -> None:
    src = Store.open(tmp_path / "src")
    image = anon_registry.ref(unique_repo("interop"), "v1")
    root = make_gadget_image(src, image)
    await push_image(src, image, _opts(anon_registry))

    layout = tmp_path / "layout"
    await _skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", f"docker://{image}",
                  f"oci:{layout}:v1")
    index = json.loads((layout / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [str(root.digest)]
    copied = {Digest.parse(f"sha256:{p.name}") for p in (layout / "blobs" / "sha256").iterdir()}
    assert graph_digests(src, image) <= copied

    copy = anon_registry.ref(unique_repo("interop-copy"), "v1")
    await _skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
                  f"docker://{image}", f"docker://{copy}")
    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, copy, _opts(anon_registry))
    assert result.descriptor is not None and result.descriptor.digest == root.digest
    assert graph_digests(dst, copy) == graph_digests(src, image)


async def test_we_pull_what_oras_py_pushes(anon_registry: RegistryServer, tmp_path: Path) -> None:
    import oras.client

    payload = tmp_path / "program.o"
    payload.write_bytes(os.urandom(50_000))
    image = anon_registry.ref(unique_repo("oras"), "v1")

    def push() -> None:
        client = oras.client.OrasClient(hostname=anon_registry.host, insecure=True)
        cwd = os.getcwd()
        os.chdir(tmp_path)  # oras-py wants paths relative to the working directory
        try:
            client.push(target=image, files=["program.o"], quiet=True)
        finally:
            os.chdir(cwd)

    await trio.to_thread.run_sync(push)
    dst = Store.open(tmp_path / "dst")
    result = await pull_image(dst, image, _opts(anon_registry))
    assert result.descriptor is not None and result.descriptor.is_manifest
    digests = graph_digests(dst, image)
    assert Digest.of_bytes(payload.read_bytes()) in digests
    assert dst.lookup(str(normalize(image))) is not None
    verify_store(tmp_path / "dst")

    check = await trio.run_process(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{image}"], capture_stdout=True
    )
    assert Digest.of_bytes(check.stdout) == result.descriptor.digest
