"""``mount --pull-on-access`` through a real mount, against a real docker-registry.

The registry sits behind a :class:`FaultProxy`, which records every request (the count of manifest
GETs is the count of pulls) and can gate one request until the test releases it, so a test knows
a pull is under way without sleeping.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.registry.push import push_image
from gadgetstore.engine.store import Store
from tests.support.cli import run_cli
from tests.support.fakes import FaultProxy
from tests.support.images import make_gadget_image
from tests.support.registry import TEST_PASSWORD, TEST_USER, RegistryServer, unique_repo
from tests.support.stalling import SlowServer

from .mounting import mounted
from .test_mount import eventually

pytestmark = [pytest.mark.fuse, pytest.mark.registry]


def publish(registry: RegistryServer, tmp_path: Path, repo: str, tag: str = "v1") -> str:
    """Push a fresh gadget image to ``registry`` as ``repo:tag``; returns its index digest."""
    src = Store.open(tmp_path / f"src-{uuid.uuid4().hex[:8]}")
    image = registry.ref(repo, tag)
    root = make_gadget_image(src, image)
    trio.run(push_image, src, image, TransferOptions(insecure_registries=frozenset({registry.host})))
    return str(root.digest)


def manifest_gets(proxy: FaultProxy, repo: str, tag: str) -> int:
    """Requests for the tag (a mirror's carry ``?ns=<upstream>``): one per pull."""
    wanted = f"/v2/{repo}/manifests/{tag}"
    return sum(1 for method, path, _ in proxy.requests if method == "GET" and path.split("?")[0] == wanted)


def in_thread(action: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``action`` in a thread; the list gets its result or the exception it raised."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(action())
        except Exception as err:  # handed to the test to assert on
            out.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_two_readers_of_one_image_make_one_pull(anon_registry: RegistryServer, proxy: FaultProxy,
                                                tmp_path: Path) -> None:
    """The short and the full name of an official gadget (served by a mirror here) are looked up at
    once: one pull, which both wait for."""
    name = f"trace_{uuid.uuid4().hex[:8]}"
    repo = f"inspektor-gadget/gadget/{name}"
    digest = publish(anon_registry, tmp_path, repo)
    config = tmp_path / "registries.toml"
    config.write_text(f'[[registry."ghcr.io".mirror]]\nurl = "http://{proxy.host}"\ninsecure = true\nresolve = true\n')
    gate = proxy.add(f"GET /v2/{repo}/manifests/v1(\\?|$)", "gate")
    store_root = tmp_path / "empty-store"  # a node starting with nothing
    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log", "--pull-on-access",
                 "--registries-config", str(config)) as mount:
        short, full = mount.path / name / "v1", mount.path / "ghcr.io/inspektor-gadget/gadget" / name / "v1"
        first, first_out = in_thread(lambda: (short / "digest").read_text())
        assert gate.arrived.wait(30), mount.log()
        second, second_out = in_thread(lambda: sorted(os.listdir(full)))
        eventually(lambda: "waiting for the pull of" in mount.log(), within=30)  # the second reader waits on it
        proxy.release()
        first.join(30)
        second.join(30)
        assert first_out == [f"{digest}\n"], mount.log()
        assert isinstance(second_out[0], list) and "program.bpf.o" in second_out[0], second_out
        assert manifest_gets(proxy, repo, "v1") == 1
        assert mount.log().count("pulling ghcr.io/inspektor-gadget/gadget/") == 1
        assert (mount.path / "tags").read_text().splitlines()[1].startswith(f"{name} v1 {digest}")
    assert Store.open(store_root).lookup(f"ghcr.io/inspektor-gadget/gadget/{name}:v1") is not None


def test_different_images_pull_at_once(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path,
                                       store_root: Path) -> None:
    """Images in two directories, the first held at the registry: the second is pulled meanwhile.
    (Lookups in one directory are serialised by the kernel: pyfuse3 cannot ask for parallel ones.)"""
    slow, fast = unique_repo("slow"), unique_repo("fast")
    publish(anon_registry, tmp_path, slow)
    fast_digest = publish(anon_registry, tmp_path, fast)
    Store.open(store_root)
    gate = proxy.add(f"GET /v2/{slow}/manifests/v1(\\?|$)", "gate")
    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log", "--pull-on-access",
                 "--insecure-registries", proxy.host) as mount:
        held, held_out = in_thread(lambda: os.listdir(mount.path / proxy.host / slow / "v1"))
        assert gate.arrived.wait(30), mount.log()
        other, other_out = in_thread(lambda: (mount.path / proxy.host / fast / "v1/digest").read_text())
        other.join(30)  # finishes while the first pull is still held at the registry
        assert other_out == [f"{fast_digest}\n"], mount.log()
        assert held.is_alive() and not held_out
        proxy.release()
        held.join(30)
        assert isinstance(held_out[0], list) and "digest" in held_out[0]


def test_misses_are_enoent_within_the_timeout_and_logged(anon_registry: RegistryServer, proxy: FaultProxy,
                                                          tmp_path: Path, store_root: Path) -> None:
    repo = unique_repo("deep")  # two components: deep/<hex>
    digest = publish(anon_registry, tmp_path, repo)
    silent = SlowServer("silent")
    Store.open(store_root)
    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log", "--pull-on-access", "--timeout", "2s",
                 "--insecure-registries", f"{proxy.host},{silent.host}") as mount:
        start = time.monotonic()
        hung = subprocess.run(["ls", str(mount.path / silent.host / "repo/v1")], capture_output=True, text=True,
                              timeout=60)
        elapsed = time.monotonic() - start
        assert hung.returncode != 0 and "No such file or directory" in hung.stderr
        assert 2 <= elapsed < 15, elapsed  # the --timeout, and a little for the ls itself
        assert f"pull on access of {silent.host}/repo:v1 failed: timed out after 2s" in mount.log()
        unknown_tag = subprocess.run(["ls", str(mount.path / proxy.host / repo / "nope")], capture_output=True,
                                     text=True)
        assert unknown_tag.returncode != 0 and "cannot access" in unknown_tag.stderr  # the lookup itself failed
        assert f"pull on access of {proxy.host}/{repo}:nope failed:" in mount.log()
        assert "not found (404)" in mount.log()
        # a repository two components deep: "deep" alone is no repository, so the walk goes on below it
        assert (mount.path / proxy.host / repo / "v1/digest").read_text() == f"{digest}\n"
        prefix = subprocess.run(["ls", str(mount.path / proxy.host / "nothing-here")], capture_output=True, text=True)
        assert prefix.returncode != 0 and "No such file or directory" in prefix.stderr
        assert mount.proc.poll() is None and "Traceback" not in mount.log()


def test_off_by_default(anon_registry: RegistryServer, proxy: FaultProxy, tmp_path: Path, store_root: Path) -> None:
    repo = unique_repo("off")
    publish(anon_registry, tmp_path, repo)
    Store.open(store_root)
    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log") as mount:
        assert not (mount.path / proxy.host / repo / "v1").exists()
        assert "Pull on access" not in (mount.path / "README").read_text()
    assert proxy.requests == []


def test_credentials_as_for_image_pull(plain_htpasswd_registry: RegistryServer, tmp_path: Path,
                                       store_root: Path) -> None:
    reg = plain_htpasswd_registry.host
    auth, none = tmp_path / "auth.json", tmp_path / "none.json"
    none.write_text("{}")
    code, _out, err = run_cli("login", reg, "--insecure-registries", reg, "-u", TEST_USER, "--password-stdin",
                              "--authfile", str(auth), input=TEST_PASSWORD + "\n")
    assert code == 0, err
    repo = unique_repo("login")
    image = plain_htpasswd_registry.ref(repo, "v1")
    digest = make_gadget_image(Store.open(tmp_path / "src"), image).digest
    code, _out, err = run_cli("--store", str(tmp_path / "src"), "image", "push", image, "--insecure-registries", reg,
                              "--authfile", str(auth))
    assert code == 0, err
    Store.open(store_root)
    for authfile, works in ((none, False), (auth, True)):
        with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log", "--pull-on-access", "--authfile",
                     str(authfile), "--insecure-registries", reg) as mount:
            path = mount.path / reg / repo / "v1/digest"
            if works:
                assert path.read_text() == f"{digest}\n", mount.log()
            else:
                assert not path.exists()
                assert f"gadgetstore login {reg} --insecure-registries {reg}" in mount.log()


def test_pull_options_need_pull_on_access(store_root: Path, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    Store.open(store_root)
    for extra in (["--timeout", "5s"], ["--insecure-registries", "localhost:5000"]):
        code, _out, err = run_cli("--store", str(store_root), "mount", *extra, str(tmp_path / "mnt"))
        assert code == 2 and "--timeout need --pull-on-access" in err, err
    code, _out, err = run_cli("--store", str(store_root), "mount", "--pull-on-access", "--timeout", "0",
                              str(tmp_path / "mnt"))
    assert code == 2 and "a duration must be more than zero" in err
    assert not os.path.ismount(tmp_path / "mnt")
