"""Real mounts: the daemon runs in a subprocess and the tests use ordinary file-system calls."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.imageinspect import image_extra_info
from gadgetstore.engine.images import arch_manifests, host_arch
from gadgetstore.engine.store import Store
from gadgetstore.fusefs.facts import ArchFiles
from gadgetstore.fusefs.textfiles import extra_info_files

from .helpers import WASM_MODULE, import_layout_tar, make_gadget, real_elves_archive, tag
from .mounting import Mount, getdents_in_small_batches, mounted

pytestmark = pytest.mark.fuse
HELPERS_DIR = Path(__file__).resolve().parent
PROJECT = HELPERS_DIR.parents[1]


@pytest.fixture
def mount(store: Store, store_root: Path, tmp_path: Path, gadget_tar: Path) -> Iterator[Mount]:
    import_layout_tar(store, gadget_tar)
    tag(store, {"localhost:5000/mygadget:v1": make_gadget(store, "mygadget", wasm=WASM_MODULE, btfgen=b"btf")})
    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log") as m:
        yield m


def in_second_process(code: str, store_root: Path) -> None:
    """Change the store from another process, as a concurrent pull or ``image remove`` would."""
    prelude = f"import sys; sys.path[:0] = [{str(HELPERS_DIR)!r}, {str(PROJECT)!r}]\n" \
              f"from pathlib import Path\nfrom helpers import *\nfrom gadgetstore.engine.store import Store\n" \
              f"use_real_elves(Path({str(real_elves_archive())!r}))\n" \
              f"store = Store.open({str(store_root)!r})\n"
    subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], check=True)


def eventually(check: Callable[[], bool], within: float = 10.0) -> float:
    """Seconds until ``check()`` held; fails after ``within`` seconds (generous: a slow machine's
    poll, re-read and invalidation all fit, and a fast one returns as soon as it holds)."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except OSError:
            pass
        assert time.monotonic() - start < within, "condition not met in time"
        time.sleep(0.01)


def expected_files(store: Store, typed: str, root: Descriptor) -> dict[str, bytes]:
    """Every file of one image directory, computed from the store directly."""
    out: dict[str, bytes] = {}
    manifests = arch_manifests(store, root)

    def arch_files(prefix: str, files: ArchFiles) -> None:
        for name, desc in files.files:
            out[prefix + name] = store.blobs.read(desc.digest)
        out[prefix + "index.json"] = store.blobs.read(root.digest)
        for rel, content in extra_info_files(image_extra_info(store, typed, files.manifest)).items():
            out[f"{prefix}extra-info/{rel}"] = content
        out[prefix + "created"] = f"{files.created}\n".encode() if files.created else b""

    for manifest in manifests:
        files = ArchFiles.of(manifest)
        arch_files(f"arch/{manifest.arch}/", files)
        out[f"arch/{manifest.arch}/digest"] = f"{manifest.desc.digest}\n".encode()
        if manifest.arch == host_arch():
            arch_files("", files)
    out["digest"] = f"{root.digest}\n".encode()
    return out


def read_tree(top: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            path = Path(dirpath, name)
            size = os.stat(path).st_size
            data = path.read_bytes()
            assert len(data) == size, f"{path}: stat says {size}, read {len(data)}"
            out[str(path.relative_to(top))] = data
    return out


def test_every_file_matches_the_store(mount: Mount, store: Store) -> None:
    for ref, typed, rel in [
        ("ghcr.io/inspektor-gadget/gadget/trace_demo:latest", "trace_demo:latest", "trace_demo/latest"),
        ("ghcr.io/inspektor-gadget/gadget/trace_demo:latest", "ghcr.io/inspektor-gadget/gadget/trace_demo:latest",
         "ghcr.io/inspektor-gadget/gadget/trace_demo/latest"),
        ("localhost:5000/mygadget:v1", "localhost:5000/mygadget:v1", "localhost:5000/mygadget/v1"),
    ]:
        root = store.lookup(ref)
        assert root is not None
        assert read_tree(mount.path / rel) == expected_files(store, typed, root), rel
        by_digest = read_tree(mount.path / ".store/by-digest/sha256" / root.digest.hex)
        assert by_digest.keys() == expected_files(store, typed, root).keys()
    mine = read_tree(mount.path / "localhost:5000/mygadget/v1")
    assert mine["program.wasm"] == WASM_MODULE and mine["btfgen.tar.gz"] == b"btf"
    assert "extra-info/wasm.gadgetAPIVersion" in mine and "extra-info/ebpf.maps" in mine
    assert "extra-info/ebpf.maps" in read_tree(mount.path / "trace_demo/latest")
    blobs = read_tree(mount.path / ".store/blobs")
    assert blobs == {f"sha256/{d.hex}": store.blobs.read(d) for d in store.blobs.iter_digests()}


def test_ig_export_is_served_like_any_image(store: Store, store_root: Path, tmp_path: Path,
                                            trace_open_tar: Path) -> None:
    """Compatibility with ig: its real export shows every file, under both names, as the store holds it."""
    root = import_layout_tar(store, trace_open_tar)
    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log") as mount:
        for typed, rel in [("trace_open:latest", "trace_open/latest"),
                           ("ghcr.io/inspektor-gadget/gadget/trace_open:latest",
                            "ghcr.io/inspektor-gadget/gadget/trace_open/latest")]:
            tree = read_tree(mount.path / rel)
            assert tree == expected_files(store, typed, root), rel
        assert json.loads(tree["extra-info/ebpf.maps"])[0] == {"Name": "events", "Type": "RingBuf"}
        assert tree["arch/arm64/program.bpf.o"][:4] == b"\x7fELF"


def test_ls_stat_cat_commands(mount: Mount, store: Store) -> None:
    listing = subprocess.run(["ls", "-lR", str(mount.path)], capture_output=True, text=True, check=True).stdout
    assert "program.bpf.o" in listing and "ebpf.programs" in listing
    root = store.lookup("ghcr.io/inspektor-gadget/gadget/trace_demo:latest")
    assert root is not None
    layer = ArchFiles.of(arch_manifests(store, root)[0]).files[-1][1]
    short = os.stat(mount.path / "trace_demo/latest/arch/amd64/program.bpf.o")
    full = os.stat(mount.path / "ghcr.io/inspektor-gadget/gadget/trace_demo/latest/arch/amd64/program.bpf.o")
    by_digest = os.stat(mount.path / ".store/by-digest/sha256" / root.digest.hex / "arch/amd64/program.bpf.o")
    blob = os.stat(mount.path / ".store/blobs/sha256" / layer.digest.hex)
    assert short.st_ino == full.st_ino == by_digest.st_ino  # one inode per blob and time: one page cache
    assert blob.st_mtime_ns == store.blobs.stat(layer.digest).st_mtime_ns  # type: ignore[union-attr]
    assert (short.st_size, short.st_mode & 0o777) == (layer.size, 0o444)
    out = subprocess.run(["cat", str(mount.path / "trace_demo/latest/digest")], capture_output=True, check=True)
    assert out.stdout == f"{root.digest}\n".encode()
    assert set(os.listdir(mount.path)) == {".store", "README", "tags", "ghcr.io", "localhost:5000", "trace_demo"}


def test_writes_are_erofs(mount: Mount) -> None:
    image = mount.path / "trace_demo/latest"
    attempts: list[Callable[[], object]] = [
        lambda: os.open(image / "digest", os.O_WRONLY),
        lambda: os.open(image / "new", os.O_WRONLY | os.O_CREAT),
        lambda: os.mkdir(image / "d"),
        lambda: os.unlink(image / "digest"),
        lambda: os.rename(image / "digest", image / "d2"),
        lambda: os.chmod(image / "digest", 0o777),
        lambda: os.truncate(image / "digest", 0),
        lambda: os.rmdir(mount.path / "trace_demo"),
        lambda: os.symlink("x", mount.path / "link"),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as err:
            attempt()
        assert err.value.errno == errno.EROFS
    assert (image / "digest").read_bytes().startswith(b"sha256:")


def test_damaged_blob_is_eio_and_the_mount_stays_up(mount: Mount, store: Store) -> None:
    program = mount.path / "localhost:5000/mygadget/v1/program.wasm"
    size = os.stat(program).st_size
    root = store.lookup("localhost:5000/mygadget:v1")
    assert root is not None
    layer = next(d for m in arch_manifests(store, root) for name, d in ArchFiles.of(m).files if name == "program.wasm")
    blob = store.blobs.path(layer.digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(WASM_MODULE.replace(b"asm", b"ASM"))
    with pytest.raises(OSError) as err:
        program.read_bytes()
    assert err.value.errno == errno.EIO
    assert os.stat(program).st_size == size
    assert (mount.path / "localhost:5000/mygadget/v1/metadata.yaml").read_bytes().startswith(b"name: mygadget")
    assert (mount.path / "trace_demo/latest/program.bpf.o").read_bytes()[:4] == b"\x7fELF"
    assert os.path.ismount(mount.path) and mount.proc.poll() is None
    blob.write_bytes(WASM_MODULE)  # healed (as a re-pull would): served again
    assert program.read_bytes() == WASM_MODULE


def test_live_add_and_remove_from_another_process(mount: Mount, store_root: Path) -> None:
    new = mount.path / "localhost:5000/fresh/v1"
    assert not new.exists()
    in_second_process('tag(store, {"localhost:5000/fresh:v1": make_gadget(store, "fresh")})', store_root)
    eventually(new.exists)
    assert (new / "digest").read_bytes().startswith(b"sha256:")
    kept = open(new / "metadata.yaml", "rb")  # noqa: SIM115 - must stay open across the removal
    try:
        (mount.path / "trace_demo/latest/digest").stat()  # cache these entries in the kernel
        in_second_process('store.remove_image("localhost:5000/fresh:v1")\n'
                          'store.remove_image("ghcr.io/inspektor-gadget/gadget/trace_demo:latest")', store_root)
        eventually(lambda: not new.exists())
        eventually(lambda: not (mount.path / "trace_demo/latest/digest").exists())
        assert sorted(os.listdir(mount.path)) == [".store", "README", "localhost:5000", "tags"]
        assert kept.read() == b"name: fresh\ndescription: test gadget\n"
    finally:
        kept.close()
    in_second_process('tag(store, {"localhost:5000/mygadget:v2": store.lookup("localhost:5000/mygadget:v1")})',
                      store_root)
    eventually(lambda: (mount.path / "localhost:5000/mygadget/v2/program.wasm").exists())


def test_find_over_500_images(store: Store, store_root: Path, tmp_path: Path) -> None:
    roots = [make_gadget(store, f"g{i}", arches=("amd64",)) for i in range(100)]
    tag(store, {f"localhost:5000/r{i % 20}/g{i}:v{j}": root for i, root in enumerate(roots) for j in range(5)})
    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log") as mount:
        out = subprocess.run(["find", str(mount.path / "localhost:5000")], capture_output=True, text=True)
        assert out.returncode == 0, f"{out.stderr}\n{mount.log()}"
        paths = out.stdout.splitlines()
        assert sum(1 for p in paths if p.endswith("/program.bpf.o") and "/arch/" not in p) == 500
        assert sum(1 for p in paths if p.endswith("/extra-info/ebpf.maps")) == 1000
        assert len(paths) == len(set(paths))


def test_signals_and_umount_unmount_cleanly(store: Store, store_root: Path, tmp_path: Path) -> None:
    tag(store, {"localhost:5000/a:v1": make_gadget(store, "a")})
    for how in ("SIGTERM", "SIGINT", "umount"):
        mount = Mount(store_root, tmp_path / how, tmp_path / f"{how}.log")
        try:
            if how == "umount":
                subprocess.run([sys.executable, "-m", "gadgetstore.cli.mount", "umount", str(mount.path)], check=True)
            else:
                mount.proc.send_signal(getattr(__import__("signal"), how))
            assert mount.proc.wait(10) == 0, mount.log()
            assert not os.path.ismount(mount.path)
            assert "Traceback" not in mount.log()
        finally:
            mount.stop()


def test_background_mode(store: Store, store_root: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "bg"
    mnt.mkdir()
    cli = [sys.executable, "-m", "gadgetstore.cli.mount"]
    subprocess.run([*cli, "--store", str(store_root), "mount", "--background", str(mnt)], check=True, timeout=20)
    try:
        assert os.path.ismount(mnt)
        assert sorted(os.listdir(mnt)) == [".store", "README", "tags"]
        again = subprocess.run([*cli, "--store", str(store_root), "mount", str(mnt)], capture_output=True, text=True)
        assert again.returncode != 0 and "already a mount point" in again.stderr
    finally:
        subprocess.run([*cli, "umount", str(mnt)], check=True)
    eventually(lambda: not os.path.ismount(mnt), within=5)


def test_bad_option_is_refused(store: Store, store_root: Path, mount_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gadgetstore.cli.mount", "--store", str(store_root), "mount",
                             "-o", "rw", str(mount_dir)], capture_output=True, text=True)
    assert result.returncode == 2 and "unsupported mount option 'rw'" in result.stderr
    assert not os.path.ismount(mount_dir)


def test_image_commands_of_another_process_show_up_live(store: Store, store_root: Path, tmp_path: Path,
                                                        gadget_tar: Path) -> None:
    def gadgetstore(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "gadgetstore.cli.main", "--store", str(store_root), *args],
                       check=True, capture_output=True)

    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log") as mount:
        short = mount.path / "trace_demo/latest"
        gadgetstore("image", "import", str(gadget_tar))
        eventually(lambda: (short / "program.bpf.o").exists())
        assert (short / "extra-info/ebpf.maps").read_bytes().startswith(b"[")
        gadgetstore("image", "tag", "trace_demo", "localhost:5000/copy:v1")
        copy = mount.path / "localhost:5000/copy/v1"
        eventually(lambda: (copy / "digest").read_bytes() == (short / "digest").read_bytes())
        gadgetstore("image", "remove", "trace_demo")
        eventually(lambda: not short.exists())
        assert (mount.path / "localhost:5000/copy/v1/program.bpf.o").read_bytes()[:4] == b"\x7fELF"


def test_readdir_is_stable_while_the_store_changes(store: Store, store_root: Path, tmp_path: Path) -> None:
    root = make_gadget(store, "many", arches=("amd64",))
    tag(store, {f"localhost:5000/r{i:03d}:v1": root for i in range(300)})
    change = (
        'untag(store, *[f"localhost:5000/r{i:03d}:v1" for i in range(0, 300, 2)])\n'
        'tag(store, {f"localhost:5000/new{i:03d}:v1": store.lookup("localhost:5000/r001:v1") for i in range(100)})'
    )
    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log") as mount:
        seen: list[str] = []
        for batch in getdents_in_small_batches(mount.path / "localhost:5000"):
            seen.extend(batch)
            if len(seen) - len(batch) < 20 <= len(seen):  # the rest comes in later READDIRPLUS calls
                in_second_process(change, store_root)
                # the daemon has picked the change up: it dropped a removed name from the kernel's cache
                eventually(lambda: not (mount.path / "localhost:5000" / "r000").exists())
        # The listing opened before the change goes on as it began: every name exactly once.
        assert sorted(seen) == [f"r{i:03d}" for i in range(300)]
        eventually(lambda: len(os.listdir(mount.path / "localhost:5000")) == 250)


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.3, 0.45])
def test_early_sigterm_leaves_no_mount(store: Store, store_root: Path, tmp_path: Path, delay: float) -> None:
    mnt = tmp_path / "early"
    mnt.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "gadgetstore.cli.mount", "--store", str(store_root), "mount",
                             str(mnt)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(delay)
        proc.terminate()
        proc.wait(10)
        assert not os.path.ismount(mnt)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
