"""Ctrl-C and SIGTERM in the middle of pull, push, import and export: one line, 130 or 143, a clean store.

Each test runs the real CLI as a child process and holds it mid-way on something the test controls
(a registry request the proxy holds, a FIFO the archive comes through), waits until the child is
there, then signals it. trio delivers Ctrl-C inside whichever task runs, so it may arrive wrapped in
exception groups: it must still be one line, never a traceback.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import trio

from gadgetstore.cli.deadline import CommandDeadline
from gadgetstore.engine.archive import export_images
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.registry.client import TransferOptions
from gadgetstore.engine.store import Store
from tests.support.cli import run_in_store, start_cli
from tests.support.fakes import FaultProxy
from tests.support.images import make_gadget_image
from tests.support.registry import RegistryServer, push_gadget_image, unique_repo

LAYER = 3 * 1024 * 1024
SIGNALS = [pytest.param(signal.SIGINT, 130, "Error: interrupted", id="SIGINT"),
           pytest.param(signal.SIGTERM, 143, "Error: interrupted by SIGTERM", id="SIGTERM")]
WAIT = 30  # seconds a child may take to get where the test holds it, or to exit: a bound, never an order


def _interrupt(child: subprocess.Popen[str], sig: int, there: threading.Event) -> tuple[int, str, str]:
    """Signal ``child`` once ``there`` is set; (exit code, stdout, stderr)."""
    try:
        assert there.wait(WAIT), "the command never got where the test holds it"
        child.send_signal(sig)
        out, err = child.communicate(timeout=WAIT)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return child.returncode, out, err


def _assert_clean(store: Path) -> None:
    """No tag, and fsck finds nothing wrong (an unfinished ingest file is only a note)."""
    code, out, err = run_in_store(store, "fsck")
    assert code == 0, out + err
    assert Store.open(store).tags() == []


def _pushed(registry: RegistryServer, tmp_path: Path) -> str:
    push = functools.partial(push_gadget_image, registry, Store.open(tmp_path / "src"), "interrupt",
                             TransferOptions(insecure_registries=frozenset({registry.host})),
                             layer_size=LAYER, archs=("amd64",))
    return registry.ref(trio.run(push), "v1")


@pytest.mark.parametrize(("sig", "code", "line"), SIGNALS)
def test_pull(anon_registry: RegistryServer, tmp_path: Path, sig: int, code: int, line: str) -> None:
    image = _pushed(anon_registry, tmp_path)
    proxy = FaultProxy(anon_registry.host)
    try:
        held = proxy.add(r"GET /v2/.*/blobs/", "hold", range_start=2 * 1024 * 1024)  # the layer's last chunk
        ref = image.replace(anon_registry.host, proxy.host)
        store = tmp_path / "dst"
        args = ("image", "pull", ref, "--insecure-registries", proxy.host, "--range-threshold", str(1024 * 1024))
        result = _interrupt(start_cli(store, *args), sig, held.arrived)
        assert result[0] == code and result[2].splitlines() == [f"Pulling {normalize(ref)}...", line], result
        _assert_clean(store)
        proxy.release()
        assert run_in_store(store, *args)[0] == 0  # a re-run completes
    finally:
        proxy.close()
    assert Store.open(store).tags() == [str(normalize(ref))]


def test_sigterm_when_started_with_sigint_ignored(anon_registry: RegistryServer, tmp_path: Path) -> None:
    """A background job of a non-interactive shell starts with SIGINT ignored: SIGTERM still stops
    the command cleanly, with its one line."""
    image = _pushed(anon_registry, tmp_path)
    proxy = FaultProxy(anon_registry.host)
    try:
        held = proxy.add(r"GET /v2/.*/blobs/", "hold", range_start=2 * 1024 * 1024)
        ref = image.replace(anon_registry.host, proxy.host)
        store = tmp_path / "dst"
        args = ("image", "pull", ref, "--insecure-registries", proxy.host, "--range-threshold", str(1024 * 1024))
        child = start_cli(store, *args, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        result = _interrupt(child, signal.SIGTERM, held.arrived)
        assert result[0] == 143, result
        assert result[2].splitlines() == [f"Pulling {normalize(ref)}...", "Error: interrupted by SIGTERM"], result
        _assert_clean(store)
    finally:
        proxy.release()
        proxy.close()


@pytest.mark.parametrize(("sig", "code", "line"), SIGNALS)
def test_push(anon_registry: RegistryServer, tmp_path: Path, sig: int, code: int, line: str) -> None:
    proxy = FaultProxy(anon_registry.host)
    try:
        image = f"{proxy.host}/{unique_repo('interrupt')}:v1"
        store = tmp_path / "src"
        make_gadget_image(Store.open(store), image, layer_size=LAYER, archs=("amd64",))
        held = proxy.add(r"(POST|PATCH|PUT) /v2/.*/blobs/uploads/", "hold")
        args = ("image", "push", image, "--insecure-registries", proxy.host)
        result = _interrupt(start_cli(store, *args), sig, held.arrived)
        assert result[0] == code and result[2].splitlines() == [f"Pushing {normalize(image)}...", line], result
        assert not [p for m, p, _ in proxy.requests if "/manifests/" in p and m == "PUT"]  # no tag upstream
        proxy.release()
        assert run_in_store(store, *args)[0] == 0
    finally:
        proxy.close()


def _archive(tmp_path: Path) -> tuple[Path, str]:
    source = Store.open(tmp_path / "export-src")
    image = "registry.example/interrupt/import:v1"
    make_gadget_image(source, image, layer_size=LAYER, archs=("amd64",))
    archive = tmp_path / "image.tar"
    export_images(source, [str(normalize(image))], archive)
    return archive, str(normalize(image))


@pytest.mark.parametrize(("sig", "code", "line"), SIGNALS)
def test_import_from_a_fifo(tmp_path: Path, sig: int, code: int, line: str) -> None:
    archive, ref = _archive(tmp_path)
    data = archive.read_bytes()
    fifo = tmp_path / "archive.fifo"
    os.mkfifo(fifo)
    store = tmp_path / "dst"
    child = start_cli(store, "image", "import", str(fifo))
    fed = threading.Event()
    with open(fifo, "wb") as writer:  # opens once the child opened its end
        # A write into a pipe returns once all but a pipe buffer (64 KiB) of it was read: the child is
        # then inside the archive, and blocked reading the rest while the write end stays open.
        writer.write(data[:len(data) // 2])
        writer.flush()
        fed.set()
        result = _interrupt(child, sig, fed)
    assert result[0] == code and result[2].splitlines() == [line], result
    _assert_clean(store)
    assert list(Store.open(store).blobs.iter_digests()) == []  # nothing staged became a blob
    code_, out, _err = run_in_store(store, "image", "import", str(archive))
    assert code_ == 0 and ref in out


@pytest.mark.parametrize(("sig", "code", "line"), SIGNALS)
def test_export(tmp_path: Path, sig: int, code: int, line: str) -> None:
    """Held at its first blob read once the temporary archive exists (export into a FIFO is another
    change's: here a FIFO the test never writes holds the read); the half-written archive is removed."""
    store = tmp_path / "store"
    image = "registry.example/interrupt/export:v1"
    make_gadget_image(Store.open(store), image, layer_size=LAYER, archs=("amd64",))
    fifo = tmp_path / "hold.fifo"
    os.mkfifo(fifo)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    script = textwrap.dedent(f"""
        import os, sys
        from gadgetstore.cli.main import main
        from gadgetstore.engine import blobstore
        original = blobstore.BlobStore.open
        def held_open(self, digest):
            if os.listdir({str(out_dir)!r}):  # writing the archive, not planning it
                print("held", flush=True)
                open({str(fifo)!r}, "rb")  # blocks: the test never opens the FIFO for writing
            return original(self, digest)
        blobstore.BlobStore.open = held_open
        sys.argv = ["gadgetstore", *sys.argv[1:]]
        main()
    """)
    command = [sys.executable, "-c", script, "--store", str(store), "image", "export", image,
               str(out_dir / "image.tar")]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    there = threading.Event()
    try:
        assert child.stdout is not None
        if child.stdout.readline() == "held\n":  # or "" if it exited first: _interrupt then fails
            there.set()
    finally:
        result = _interrupt(child, sig, there)
    assert result[0] == code and result[2].splitlines() == [line], result
    assert list(out_dir.iterdir()) == []  # neither the archive nor its temporary file


def test_an_interrupt_arrives_at_a_checkpoint_not_in_the_middle_of_a_line() -> None:
    """A network command runs under :class:`CommandDeadline`: a SIGINT that comes while a task runs
    plain code is raised at that task's next checkpoint, so the code between runs to its end."""
    reached: list[str] = []

    async def step() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # its handler runs at one of the next bytecodes
        total = sum(range(10_000))
        reached.append(f"ran to the end: {total}")
        await trio.lowlevel.checkpoint()
        reached.append("after the checkpoint")

    with pytest.raises(KeyboardInterrupt):
        CommandDeadline(None).run(step)
    assert reached == [f"ran to the end: {sum(range(10_000))}"]
