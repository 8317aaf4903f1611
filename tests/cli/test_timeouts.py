"""``--timeout DURATION`` on the network commands: exit 124, one line naming what was in flight, a
clean store, and a re-run that resumes. The registry requests are held by a proxy, so the command
is waiting exactly there when its deadline passes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.ingest import resume
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.cli import run_cli, run_in_store
from tests.support.fakes import FakeServer, FaultProxy, Reply, Request
from tests.support.images import graph_digests, make_gadget_image
from tests.support.registry import TEST_PASSWORD, TEST_USER, RegistryServer, unique_repo
from tests.support.stalling import SlowServer

MIB = 1024 * 1024
LAYER = 3 * MIB


def _range_bytes(proxy: FaultProxy) -> int:
    total = 0
    for method, path, headers in proxy.requests:
        if method == "GET" and "/blobs/" in path and headers.get("Range"):
            first, last = headers["Range"].removeprefix("bytes=").split("-")
            total += int(last) - int(first) + 1
    return total


def _pushed(registry: RegistryServer, tmp_path: Path) -> tuple[str, Store]:
    repo = unique_repo("timeout")
    src = Store.open(tmp_path / "src")
    make_gadget_image(src, registry.ref(repo, "v1"), layer_size=LAYER, archs=("amd64",))
    trio.run(push_image, src, registry.ref(repo, "v1"), TransferOptions(insecure_registries=frozenset({registry.host})))
    return repo, src


def test_pull_names_the_manifest_it_waited_for(anon_registry: RegistryServer, proxy: FaultProxy,
                                               tmp_path: Path) -> None:
    repo, _src = _pushed(anon_registry, tmp_path)
    proxy.add(r"GET /v2/.*/manifests/v1", "hold")
    ref = f"{proxy.host}/{repo}:v1"
    code, _out, err = run_in_store(tmp_path / "dst", "image", "pull", ref, "--insecure-registries", proxy.host,
                                   "--timeout", "0.5s")
    assert code == 124
    assert err.splitlines() == [f"Pulling {normalize(ref)}...",
                                f"Error: timed out after 0.5s; still in flight: manifest {ref}"]
    assert Store.open(tmp_path / "dst").tags() == []


def test_pull_timed_out_mid_blob_resumes(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    repo, src = _pushed(anon_registry, tmp_path)
    layer = next(d for d in graph_digests(src, f"{anon_registry.host}/{repo}:v1") if src.blobs.stat(d).st_size == LAYER)
    held = proxy.add(r"GET /v2/.*/blobs/", "hold", range_start=2 * MIB)  # the last of three chunks
    ref = f"{proxy.host}/{repo}:v1"
    args = ("image", "pull", ref, "--insecure-registries", proxy.host, "--range-threshold", str(MIB))
    code, _out, err = run_in_store(tmp_path / "dst", *args, "--timeout", "3s")
    assert held.arrived.is_set()
    assert code == 124
    assert err.splitlines()[-1] == (f"Error: timed out after 3s; still in flight: "
                                    f"blob sha256:{layer.hex[:12]} of {proxy.host}/{repo}")
    assert Store.open(tmp_path / "dst").tags() == []  # nothing half-written is visible
    assert not Store.open(tmp_path / "dst").blobs.has(layer)
    assert run_in_store(tmp_path / "dst", "fsck")[0] == 0

    proxy.release()
    before = _range_bytes(proxy)
    assert run_in_store(tmp_path / "dst", *args, "--timeout", "1m")[0] == 0
    assert _range_bytes(proxy) - before <= MIB + 2 * resume.BLOCK  # only the held chunk came again
    assert Store.open(tmp_path / "dst").tags() == [str(normalize(ref))]


def test_push_names_the_upload(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path) -> None:
    repo = unique_repo("timeout")
    image = f"{proxy.host}/{repo}:v1"
    make_gadget_image(Store.open(tmp_path / "src"), image, layer_size=LAYER, archs=("amd64",))
    proxy.add(r"POST /v2/.*/blobs/uploads/", "hold", times=10)
    code, _out, err = run_in_store(tmp_path / "src", "image", "push", image, "--insecure-registries", proxy.host,
                                   "--timeout", "0.5s")
    assert code == 124
    last = err.splitlines()[-1]
    assert last.startswith(f"Error: timed out after 0.5s; still in flight: upload to {proxy.host}/{repo}")


def test_login_names_the_check(tmp_path: Path) -> None:
    server = SlowServer("silent")
    try:
        code, out, err = run_cli("login", server.host, "--insecure-registries", server.host, "-u", TEST_USER,
                                 "--password-stdin", "--authfile", str(tmp_path / "auth.json"), "--timeout", "0.5s",
                                 input=TEST_PASSWORD)
    finally:
        server.close()
    assert (code, out) == (124, "")
    assert err == f"Error: timed out after 0.5s; still in flight: GET {server.host}/v2/\n"
    assert not (tmp_path / "auth.json").exists()


def test_inspect_bounds_its_pull(tmp_path: Path) -> None:
    server = SlowServer("silent")
    try:
        code, _out, err = run_in_store(tmp_path / "store", "image", "inspect", f"{server.host}/demo:v1",
                                       "--insecure-registries", server.host, "--timeout", "0.5s")
    finally:
        server.close()
    assert code == 124
    assert err.splitlines()[-1] == f"Error: timed out after 0.5s; still in flight: manifest {server.host}/demo:v1"


@pytest.mark.parametrize("value", ["soon", "0", "-1s", "5 minutes"])
def test_a_bad_duration_is_a_usage_error(value: str) -> None:
    code, _out, err = run_cli("image", "pull", "--timeout", value, "trace_open")
    assert code == 2
    assert "Invalid value for '--timeout'" in err and repr(value) in err


def test_pull_cut_while_a_retry_waits_names_the_wait(tmp_path: Path) -> None:
    """The registry asks for 30 s before the next try: the deadline cuts that wait, and names it."""

    def busy(req: Request) -> Reply:
        if req.path == "/v2/":
            return Reply(200)
        return Reply(503, {"Retry-After": "30"})

    server = FakeServer(busy)
    try:
        started = time.monotonic()
        code, _out, err = run_in_store(tmp_path / "dst", "image", "pull", f"{server.host}/demo:v1",
                                       "--insecure-registries", server.host, "--timeout", "2s")
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert code == 124
    assert err.splitlines()[-1] == (f"Error: timed out after 2s; still in flight: "
                                    f"manifest {server.host}/demo:v1 (retrying after 503)")
    assert elapsed < 10, "the deadline, not the registry's Retry-After, ends the command"
    assert [req.path for req in server.requests if req.path != "/v2/"] == ["/v2/demo/manifests/v1"]
    assert Store.open(tmp_path / "dst").tags() == []
