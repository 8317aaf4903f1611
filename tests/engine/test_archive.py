import hashlib
import io
import json
import os
import stat
import tarfile
import threading
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.archive import export_images, import_archive
from gadgetstore.engine.descriptor import MAX_GRAPH_DEPTH
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import GraphTooLarge, ImageNotFound, InvalidArchive
from gadgetstore.engine.fsck import fsck
from gadgetstore.engine.store import Store
from tests.support.graphs import diamond_chain
from tests.support.images import DEMO_IMAGE, ArchivedImage, make_gadget_image

TRACE_OPEN = "ghcr.io/inspektor-gadget/gadget/trace_open:latest"
IG_INDEX_DIGEST = "sha256:87c3ecca8d843f2e08382836cb0eff718fa5c56d786c73e2674d7e9db13a1ac7"
"""The root of ig's real export in ../shared (fixed bytes, unlike the suite's own image)."""


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def tree_snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ig_export_imports_and_reexports_identical_blobs(store: Store, trace_open_tar: Path, tmp_path: Path) -> None:
    """Compatibility with ig: its real export comes back out with every blob byte for byte."""
    assert import_archive(store, trace_open_tar) == [TRACE_OPEN]
    assert str(store.resolve(TRACE_OPEN).digest) == IG_INDEX_DIGEST
    out = tmp_path / "out.tar"
    export_images(store, [TRACE_OPEN], out)
    original = {k: v for k, v in tar_members(trace_open_tar).items() if k.startswith("blobs/")}
    exported = {k: v for k, v in tar_members(out).items() if k.startswith("blobs/")}
    assert exported == original
    index = json.loads(tar_members(out)["index.json"])
    assert [(m["digest"], m["annotations"]["org.opencontainers.image.ref.name"]) for m in index["manifests"]] == [
        (IG_INDEX_DIGEST, TRACE_OPEN)
    ]
    assert fsck(store).clean


def test_export_is_deterministic_and_zstd_round_trips(store: Store, gadget_image: ArchivedImage,
                                                      tmp_path: Path) -> None:
    assert import_archive(store, gadget_image.path) == [DEMO_IMAGE]
    assert store.resolve(DEMO_IMAGE) == gadget_image.root
    export_images(store, [DEMO_IMAGE], tmp_path / "a.tar")
    export_images(store, [DEMO_IMAGE], tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert (tmp_path / "a.tar").read_bytes() == gadget_image.path.read_bytes(), "the archive it came from"
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {m.mtime for m in members} == {0} and {m.uid for m in members} == {0}
    export_images(store, [DEMO_IMAGE], tmp_path / "c.tar.zst")
    compressed = (tmp_path / "c.tar.zst").read_bytes()
    assert compressed[:4] == b"\x28\xb5\x2f\xfd"
    assert zstandard.ZstdDecompressor().decompressobj().decompress(compressed) == (tmp_path / "a.tar").read_bytes()
    fresh = Store.open(tmp_path / "fresh")
    assert import_archive(fresh, tmp_path / "c.tar.zst") == [DEMO_IMAGE]
    assert fsck(fresh).clean


def test_export_of_unknown_image_fails_and_writes_nothing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound):
        export_images(store, ["x.io/none:1"], tmp_path / "x.tar")
    assert list(tmp_path.glob("*x.tar*")) == []


# -- hostile and broken archives -------------------------------------------------------------------

LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def _index_for(data: bytes, ref: str = "x.io/evil:1") -> bytes:
    entry = {"mediaType": "application/octet-stream", "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
             "size": len(data), "annotations": {"org.opencontainers.image.ref.name": ref}}
    return json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()


def build_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


PAYLOAD = b"payload"
BLOB = "blobs/sha256/" + hashlib.sha256(PAYLOAD).hexdigest()
GOOD = [("oci-layout", LAYOUT), ("index.json", _index_for(PAYLOAD)), (BLOB, PAYLOAD)]


def device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info


HOSTILE: dict[str, tuple[list[tarfile.TarInfo | tuple[str, bytes]], str]] = {
    "dotdot": ([*GOOD, ("../escape", b"x")], "traversal"),
    "dotdot_inside": ([*GOOD, ("blobs/../../escape", b"x")], "traversal"),
    "absolute": ([*GOOD, ("/etc/cron.d/x", b"x")], "absolute"),
    "symlink_blob": ([GOOD[0], GOOD[1], link(BLOB, "/etc/passwd", tarfile.SYMTYPE)], "regular files"),
    "hardlink": ([GOOD[0], GOOD[1], link(BLOB, "/etc/shadow", tarfile.LNKTYPE)], "regular files"),
    "symlink_dir_then_file": ([*GOOD, link("blobs/sha512", "/tmp", tarfile.SYMTYPE)], "regular files"),
    "device": ([*GOOD, device("blobs/sha256/dev")], "regular files"),
    "unknown_file": ([*GOOD, ("blobs/sha256/notahex", b"x")], "invalid digest"),
    "stray_file": ([*GOOD, ("etc/passwd", b"x")], "not part of an OCI image layout"),
    "digest_mismatch": ([GOOD[0], GOOD[1], (BLOB, b"payloaX")], "digest"),
    "missing_blob": ([GOOD[0], GOOD[1]], "missing"),
    "duplicate_index": ([*GOOD, ("index.json", _index_for(PAYLOAD, "x.io/other:1"))], "twice"),
    "no_layout": ([GOOD[1], GOOD[2]], "oci-layout"),
    "bad_layout": ([("oci-layout", b'{"imageLayoutVersion":"2"}'), GOOD[1], GOOD[2]], "imageLayoutVersion"),
    "no_index": ([GOOD[0], GOOD[2]], "index.json"),
    "index_not_json": ([GOOD[0], ("index.json", b"{"), GOOD[2]], "not an OCI image index"),
    "size_lies": ([GOOD[0], ("index.json", _index_for(PAYLOAD).replace(b'"size": 7', b'"size": 70')), GOOD[2]],
                  "descriptor says 70"),
    "bad_ref": ([GOOD[0], ("index.json", _index_for(PAYLOAD, "../../x")), GOOD[2]], "unsupported image reference"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_store_unchanged(store: Store, store_root: Path, gadget_tar: Path,
                                                       tmp_path: Path, case: str) -> None:
    import_archive(store, gadget_tar)
    before = tree_snapshot(store_root)
    members, message = HOSTILE[case]
    archive = build_tar(tmp_path / f"{case}.tar", members)
    with pytest.raises(InvalidArchive, match=message):
        import_archive(store, archive)
    assert tree_snapshot(store_root) == before


def _cut_points(archive: Path) -> dict[str, int]:
    """Places to cut ``archive``, found from its members so that they hold whatever the ELFs' sizes."""
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    largest = max(members, key=lambda m: m.size)
    last = members[-1]
    return {"first_header": 100, "first_blob": members[0].offset_data + 10,
            "inside_elf": largest.offset_data + largest.size // 2,
            "before_end_marker": last.offset_data + last.size + 100}


@pytest.mark.parametrize("where", ["first_header", "first_blob", "inside_elf", "before_end_marker"])
def test_truncated_archive_is_refused_and_store_unchanged(store: Store, store_root: Path, gadget_tar: Path,
                                                         tmp_path: Path, where: str) -> None:
    before = tree_snapshot(store_root)
    truncated = tmp_path / "t.tar"
    data = gadget_tar.read_bytes()
    cut = _cut_points(gadget_tar)[where]
    assert cut < len(data) - 1024, "the end-of-archive marker is cut off too"
    truncated.write_bytes(data[:cut])
    with pytest.raises(InvalidArchive):
        import_archive(store, truncated)
    assert tree_snapshot(store_root) == before


def test_truncated_zstd_archive_is_refused(store: Store, store_root: Path, gadget_tar: Path,
                                           tmp_path: Path) -> None:
    before = tree_snapshot(store_root)
    data = zstandard.ZstdCompressor().compress(gadget_tar.read_bytes())
    (tmp_path / "t.tar.zst").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidArchive):
        import_archive(store, tmp_path / "t.tar.zst")
    assert tree_snapshot(store_root) == before


def test_dot_slash_names_are_accepted(store: Store, tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "dot.tar", [(f"./{name}", data) for name, data in GOOD])
    assert import_archive(store, archive) == ["x.io/evil:1"]
    assert store.blobs.read(store.resolve("x.io/evil:1").digest) == PAYLOAD


def test_member_named_after_a_stored_blob_is_still_verified(store: Store, store_root: Path,
                                                           tmp_path: Path) -> None:
    import_archive(store, build_tar(tmp_path / "good.tar", list(GOOD)))
    before = tree_snapshot(store_root)
    lying = build_tar(tmp_path / "lying.tar", [GOOD[0], GOOD[1], (BLOB, b"payloaX")])
    with pytest.raises(InvalidArchive, match="digest"):
        import_archive(store, lying)
    assert tree_snapshot(store_root) == before


def _fifo_reader(path: Path, received: threading.Event | None = None) -> tuple[threading.Thread, list[bytes]]:
    """Reads the FIFO at ``path`` to its end in a thread; sets ``received`` at the first bytes."""
    os.mkfifo(path)
    chunks: list[bytes] = []

    def read() -> None:
        with open(path, "rb", buffering=0) as fifo:
            while chunk := fifo.read(65536):
                chunks.append(chunk)
                if received is not None:
                    received.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, chunks


def test_export_streams_into_a_fifo(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader has bytes before the second layer is opened, and gets exactly the file export's bytes.

    Layers go in digest order, so the other 1 MiB layer is in the archive before that one.
    """
    make_gadget_image(store, "x.io/big:1", layer_size=1024 * 1024)
    export_images(store, ["x.io/big:1"], tmp_path / "file.tar")
    graph = store.walk([store.resolve("x.io/big:1")])
    last = max((d for d, desc in graph.items() if desc.media_type == mt.GADGET_EBPF), key=lambda d: d.hex)
    received = threading.Event()
    open_blob = store.blobs.open

    def open_after_the_reader_has_bytes(digest: Digest) -> BinaryIO:
        if digest == last:
            assert received.wait(timeout=60), "nothing reached the pipe before the archive's end"
        return open_blob(digest)

    monkeypatch.setattr(store.blobs, "open", open_after_the_reader_has_bytes)
    reader, chunks = _fifo_reader(tmp_path / "pipe", received)
    export_images(store, ["x.io/big:1"], tmp_path / "pipe")
    reader.join(timeout=60)
    assert b"".join(chunks) == (tmp_path / "file.tar").read_bytes()
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["file.tar", "home", "pipe", "store"]


@pytest.mark.parametrize("name", ["a.tar", "a.tar.zst"])
def test_import_reads_a_pipe_without_seeking(store: Store, tmp_path: Path, name: str) -> None:
    make_gadget_image(store, "x.io/piped:1")
    export_images(store, ["x.io/piped:1"], tmp_path / name)
    os.mkfifo(tmp_path / "pipe")
    data = (tmp_path / name).read_bytes()

    def write() -> None:
        with open(tmp_path / "pipe", "wb") as fifo:
            fifo.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    fresh = Store.open(tmp_path / "fresh")
    assert import_archive(fresh, tmp_path / "pipe") == ["x.io/piped:1"]
    writer.join(timeout=60)
    assert fsck(fresh).clean

# -- graphs beyond the limits of a pull ------------------------------------------------------------


def test_export_of_a_graph_deeper_than_the_limit_fails_and_writes_nothing(store: Store, tmp_path: Path) -> None:
    diamond_chain(12).store_as(store, "x.io/chain:v1")
    with pytest.raises(GraphTooLarge, match=rf"^image x.io/chain:v1: sha256:\w+ is {MAX_GRAPH_DEPTH + 1} levels"):
        export_images(store, ["x.io/chain:v1"], tmp_path / "chain.tar")
    assert list(tmp_path.glob("*chain.tar*")) == []


def test_import_of_a_graph_deeper_than_the_limit_is_refused_and_store_unchanged(store: Store, store_root: Path,
                                                                               tmp_path: Path) -> None:
    graph = diamond_chain(12)
    root = {**graph.root, "annotations": {"org.opencontainers.image.ref.name": "x.io/chain:v1"}}
    index = json.dumps({"schemaVersion": 2, "manifests": [root]}).encode()
    blobs = [(f"blobs/sha256/{digest.hex}", data) for digest, data in graph.blobs.items()]
    archive = build_tar(tmp_path / "chain.tar", [("oci-layout", LAYOUT), ("index.json", index), *blobs])
    before = tree_snapshot(store_root)
    with pytest.raises(GraphTooLarge, match=f"^image x.io/chain:v1: .* deeper than the limit of {MAX_GRAPH_DEPTH}$"):
        import_archive(store, archive)
    assert tree_snapshot(store_root) == before
