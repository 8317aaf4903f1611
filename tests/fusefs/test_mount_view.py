"""The mounted view as a user reads it, through a real mount: the root's README and tags, times,
text files that end with a newline, extra-info as ``image inspect`` prints it, ``.`` and ``..``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gadgetstore.engine.store import Store

from .helpers import WASM_MODULE, import_layout_tar, make_gadget, tag
from .mounting import Mount, mounted
from .test_mount import eventually, in_second_process

pytestmark = pytest.mark.fuse
BLOB_FILES = {"index.json", "manifest.json", "metadata.yaml", "program.bpf.o", "program.wasm", "btfgen.tar.gz"}


def gadgetstore(store_root: Path, *args: str) -> str:
    """The CLI's standard output, written to a pipe (not a terminal), as a script would read it."""
    return subprocess.run([sys.executable, "-m", "gadgetstore.cli.main", "--store", str(store_root), *args],
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def mount(store: Store, store_root: Path, tmp_path: Path, gadget_tar: Path) -> Iterator[Mount]:
    import_layout_tar(store, gadget_tar)
    tag(store, {"localhost:5000/mygadget:v1": make_gadget(store, "mygadget", wasm=WASM_MODULE)})
    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log") as m:
        yield m


def test_the_root_explains_itself_and_lists_every_tag(mount: Mount, store_root: Path) -> None:
    plain_ls = subprocess.run(["ls", str(mount.path)], capture_output=True, text=True, check=True).stdout
    assert set(plain_ls.split()) == {"README", "tags", "ghcr.io", "localhost:5000", "trace_demo"}  # .store hidden
    assert sorted(os.listdir(mount.path / ".store")) == ["blobs", "by-digest"]
    readme = (mount.path / "README").read_text()
    assert f"read-only view of the store {store_root}\n" in readme
    assert "by short name: trace_demo\n" in readme and "by its full name: ghcr.io, localhost:5000\n" in readme
    assert ".store/by-digest/sha256/<hex>/" in readme and ".store/blobs/sha256/<hex>" in readme
    assert (mount.path / "tags").read_text() == gadgetstore(store_root, "image", "list", "--no-trunc")
    assert (mount.path / "tags").read_text().splitlines()[1:] == [  # by full reference, as image list sorts
        "trace_demo latest " + (mount.path / "trace_demo/latest/digest").read_text().strip() + " "
        + (mount.path / "trace_demo/latest/created").read_text().strip(),
        "localhost:5000/mygadget v1 " + (mount.path / "localhost:5000/mygadget/v1/digest").read_text().strip()
        + " 2024-01-02T03:04:05Z",
    ]


def test_tags_and_readme_follow_the_store(mount: Mount, store_root: Path) -> None:
    assert "example.com/fresh" not in (mount.path / "tags").read_text()
    in_second_process('tag(store, {"example.com/fresh:v1": make_gadget(store, "fresh")})', store_root)
    eventually(lambda: "example.com/fresh v1 sha256:" in (mount.path / "tags").read_text())
    assert "by its full name: example.com, ghcr.io, localhost:5000\n" in (mount.path / "README").read_text()
    assert (mount.path / "tags").read_text() == gadgetstore(store_root, "image", "list", "--no-trunc")


def test_times_are_the_images_creation_times(store: Store, store_root: Path, tmp_path: Path) -> None:
    created = {"v1": "2020-03-04T05:06:07Z", "v2": "2024-01-02T03:04:05.123456789Z", "v3": "2022-06-01T00:00:00+02:00"}
    tag(store, {f"localhost:5000/app:{t}": make_gadget(store, f"app-{t}", created=c) for t, c in created.items()})
    tag(store, {"localhost:5000/app:v4": make_gadget(store, "app-v4", created="")})  # no creation time
    committed = store.journal.state.tag_times["localhost:5000/app:v4"]
    with mounted(store_root, tmp_path / "mnt", tmp_path / "mount.log") as mount:
        app = mount.path / "localhost:5000/app"
        expected = {"v1": 1583298367 * 10**9, "v2": 1704164645 * 10**9 + 123456789, "v3": 1654034400 * 10**9,
                    "v4": committed}
        for name, when in expected.items():
            for below in ("", "digest", "index.json", "arch/arm64", "arch/arm64/program.bpf.o",
                          "extra-info/ebpf.maps", "extra-info/raw/oci.tag", "extra-info/programs"):
                assert os.stat(app / name / below).st_mtime_ns == when, (name, below)
        by_age = subprocess.run(["ls", "-t", str(app)], capture_output=True, text=True, check=True).stdout.split()
        assert by_age == ["v4", "v2", "v3", "v1"]
        assert os.stat(app).st_mtime_ns == committed  # a directory above images: its newest commit
        in_second_process('tag(store, {"localhost:5000/app:v5": store.lookup("localhost:5000/app:v1")})', store_root)
        store.refresh()
        newest = store.journal.state.tag_times["localhost:5000/app:v5"]
        eventually(lambda: os.stat(app).st_mtime_ns == newest)  # the kernel was told to ask again
        assert os.stat(app / "v5").st_mtime_ns == expected["v1"]  # the image's own time: it was created then


def test_generated_text_ends_with_a_newline_and_blobs_stay_exact(mount: Mount, store: Store) -> None:
    image = mount.path / "trace_demo/latest"
    checked = 0
    for dirpath, _dirs, files in os.walk(image):
        for name in files:
            path = Path(dirpath, name)
            data = path.read_bytes()
            if name in BLOB_FILES or path.parent.name == "raw":
                continue
            assert data == b"" or data.endswith(b"\n"), path
            checked += 1
    assert checked > 30
    for arch in ("amd64", "arm64"):
        manifest_digest = (image / "arch" / arch / "digest").read_text().strip()
        sha = subprocess.run(["sha256sum", str(image / "arch" / arch / "manifest.json")], capture_output=True,
                             text=True, check=True).stdout.split()[0]
        assert f"sha256:{sha}" == manifest_digest
        manifest = json.loads((image / "arch" / arch / "manifest.json").read_bytes())
        layer = manifest["layers"][0]["digest"]
        assert "sha256:" + hashlib.sha256((image / "arch" / arch / "program.bpf.o").read_bytes()).hexdigest() == layer
    root = store.lookup("ghcr.io/inspektor-gadget/gadget/trace_demo:latest")
    assert root is not None and (image / "index.json").read_bytes() == store.blobs.read(root.digest)


def test_extra_info_reads_as_image_inspect_prints_it(mount: Mount, store_root: Path) -> None:
    extra = mount.path / "trace_demo/latest/extra-info"
    shown = json.loads(gadgetstore(store_root, "image", "inspect", "trace_demo", "-o", "json"))
    for key in ("ebpf.maps", "ebpf.programs", "ebpf.variables", "oci.manifest"):
        assert (extra / key).read_text() == gadgetstore(store_root, "image", "inspect", "trace_demo",
                                                        "--extra-info", key, "-o", "jsonpretty"), key
        assert (extra / key).read_text().count("\n") > 3  # one element per line, not one long line
    assert {name: (extra / "raw" / name).read_text() for name in os.listdir(extra / "raw")} == {
        key: value["content"] for key, value in shown.items()}
    programs = json.loads(shown["ebpf.programs"]["content"])
    listings = {name: (extra / "programs" / name).read_text() for name in os.listdir(extra / "programs")}
    assert listings == {p["Source"].split("\n")[0].rstrip(":") + ".txt": p["Source"] for p in programs}
    assert all("/" in p["Section"] for p in programs)  # sections hold "/": names come from the listing
    assert (extra / "oci.tag").read_text() == "latest\n"


def test_ls_a_shows_dot_and_dotdot(mount: Mount) -> None:
    image = mount.path / "trace_demo/latest"
    for directory in (mount.path, image, image / "extra-info", image / "arch/arm64", mount.path / ".store/blobs"):
        out = subprocess.run(["ls", "-a1i", str(directory)], capture_output=True, text=True, check=True).stdout
        entries = {line.split()[1]: int(line.split()[0]) for line in out.splitlines()}
        assert entries["."] == os.stat(directory).st_ino, directory
        assert entries[".."] == os.stat(directory / "..").st_ino, directory
    assert subprocess.run(["ls", "-a", str(mount.path)], capture_output=True, text=True, check=True).stdout.split()[
        :3] == [".", "..", ".store"]
