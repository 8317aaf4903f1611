import hashlib
import io
import json
import os
import re
import stat
import tarfile
import threading
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import zstandard

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.archive import export_images, import_archive
from gadgetstore.engine.blobstore import BlobStore, IngestWriter
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


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def member(data: bytes) -> tuple[str, bytes]:
    """A blob as an archive member, named after its digest."""
    return f"blobs/sha256/{sha(data)}", data


def descriptor(data: bytes, media_type: str, **fields: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": f"sha256:{sha(data)}", "size": len(data), **fields}


def tagged(data: bytes, ref: str = "x.io/evil:1", media_type: str = mt.OCI_MANIFEST, **fields: Any) -> dict[str, Any]:
    return descriptor(data, media_type, **fields, annotations={mt.ANNOTATION_REF_NAME: ref})


def index_json(*entries: dict[str, Any]) -> tuple[str, bytes]:
    return "index.json", json.dumps({"schemaVersion": 2, "manifests": list(entries)}).encode()


def document(**fields: Any) -> bytes:
    return json.dumps({"schemaVersion": 2, **fields}).encode()


CONFIG = b"name: evil\n"
PAYLOAD = b"payload"
MANIFEST = document(mediaType=mt.OCI_MANIFEST, config=descriptor(CONFIG, mt.GADGET_CONFIG),
                    layers=[descriptor(PAYLOAD, mt.GADGET_EBPF)])
OTHER_MANIFEST = document(mediaType=mt.OCI_MANIFEST, config=descriptor(CONFIG, mt.GADGET_CONFIG), layers=[])
OFFICIAL = "ghcr.io/inspektor-gadget/gadget/trace_open:latest"
BLOB = member(PAYLOAD)[0]
GOOD: list[tarfile.TarInfo | tuple[str, bytes]] = [
    ("oci-layout", LAYOUT), index_json(tagged(MANIFEST)), member(CONFIG), member(MANIFEST), member(PAYLOAD)]
HEAD = GOOD[:4]  # all but the layer


def build_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for item in members:
            if isinstance(item, tarfile.TarInfo):
                tar.addfile(item)
            else:
                name, data = item
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info


def huge_pax_header(name: str) -> tarfile.TarInfo:
    """An empty member behind a pax header of more than a MiB (tarfile reads those whole)."""
    info = tarfile.TarInfo(name)
    info.pax_headers = {"comment": "x" * (1024 * 1024 + 1)}
    return info


def with_layer_image(manifest: bytes, ref: str = "x.io/evil:1", media_type: str = mt.OCI_MANIFEST) -> list[
        tarfile.TarInfo | tuple[str, bytes]]:
    """A whole archive whose index.json tags ``manifest`` (as ``media_type``), with config and layer."""
    return [GOOD[0], index_json(tagged(manifest, ref, media_type)), member(CONFIG), member(manifest), member(PAYLOAD)]


def child_typed(media_type: str) -> list[tarfile.TarInfo | tuple[str, bytes]]:
    """An image index whose entry for the manifest says ``media_type``."""
    index = document(mediaType=mt.OCI_INDEX, manifests=[descriptor(MANIFEST, media_type)])
    return [GOOD[0], index_json(tagged(index, media_type=mt.OCI_INDEX)), member(index), *GOOD[2:]]


SIG_TAG = f"sha256-{sha(MANIFEST)}.sig"
NESTED = b"[" * 200_000 + b"]" * 200_000  # deeper than Python's parser goes, far inside the size caps
HOSTILE: dict[str, tuple[list[tarfile.TarInfo | tuple[str, bytes]], str]] = {
    "dotdot": ([*GOOD, ("../escape", b"x")], "traversal"),
    "dotdot_inside": ([*GOOD, ("blobs/../../escape", b"x")], "traversal"),
    "absolute": ([*GOOD, ("/etc/cron.d/x", b"x")], "absolute"),
    "symlink_blob": ([*HEAD, link(BLOB, "/etc/passwd", tarfile.SYMTYPE)], "regular files"),
    "hardlink": ([*HEAD, link(BLOB, "/etc/shadow", tarfile.LNKTYPE)], "regular files"),
    "symlink_dir_then_file": ([*GOOD, link("blobs/sha512", "/tmp", tarfile.SYMTYPE)], "regular files"),
    "device": ([*GOOD, device("blobs/sha256/dev")], "regular files"),
    "unknown_file": ([*GOOD, ("blobs/sha256/notahex", b"x")], "invalid digest"),
    "stray_file": ([*GOOD, ("etc/passwd", b"x")], "not part of an OCI image layout"),
    "digest_mismatch": ([*HEAD, (BLOB, b"payloaX")], "digest"),
    "missing_blob": (HEAD, "missing"),
    "duplicate_index": ([*GOOD, index_json(tagged(MANIFEST, "x.io/other:1"))], "twice"),
    "no_layout": (GOOD[1:], "oci-layout"),
    "bad_layout": ([("oci-layout", b'{"imageLayoutVersion":"2"}'), *GOOD[1:]], "imageLayoutVersion"),
    "no_index": ([GOOD[0], *GOOD[2:]], "index.json"),
    "index_not_json": ([GOOD[0], ("index.json", b"{"), *GOOD[2:]], "not an OCI image index"),
    "index_nested": ([GOOD[0], ("index.json", NESTED), *GOOD[2:]], "not an OCI image index"),
    "layout_nested": ([("oci-layout", NESTED), *GOOD[1:]], "imageLayoutVersion"),
    "size_lies": ([GOOD[0], index_json(tagged(MANIFEST, size=len(MANIFEST) + 63)), *GOOD[2:]],
                  f"has {len(MANIFEST)} bytes, its descriptor says {len(MANIFEST) + 63}"),
    "huge_pax_header": ([*HEAD, huge_pax_header(BLOB)], "extended header"),
    # tags: exactly what the store keeps (a full reference as ig normalises it, or a signature tag)
    "bad_ref": ([GOOD[0], index_json(tagged(MANIFEST, "../../x")), *GOOD[2:]], "unsupported image reference"),
    "digest_ref": (with_layer_image(MANIFEST, f"x.io/evil@sha256:{'a' * 64}"), "a digest reference, as a tag"),
    "one_tag_two_images": ([GOOD[0], index_json(tagged(MANIFEST, "trace_open"), tagged(OTHER_MANIFEST, OFFICIAL)),
                            member(CONFIG), member(MANIFEST), member(OTHER_MANIFEST), member(PAYLOAD)],
                           f"tags {OFFICIAL} twice"),
    "non_ascii_tag": (with_layer_image(MANIFEST, "x.io/evil:vé"), "unsupported image reference"),
    "non_ascii_digit_tag": (with_layer_image(MANIFEST, "x.io/evil:v\u0663"), "unsupported image reference"),
    "signature_tag_newline": (with_layer_image(MANIFEST, SIG_TAG + "\n"), "unsupported image reference"),
    "tag_newline": (with_layer_image(MANIFEST, "x.io/evil:1\n"), "unsupported image reference"),
    # documents: checked for their media type exactly as a pull checks them
    "empty_manifest": (with_layer_image(b"{}"), "schemaVersion must be 2"),
    "manifest_without_layers": (with_layer_image(document(mediaType=mt.OCI_MANIFEST,
                                                          config=descriptor(CONFIG, mt.GADGET_CONFIG))),
                                "a manifest must have a config and a list of layers"),
    "root_type_disagrees": (with_layer_image(MANIFEST, media_type=mt.OCI_INDEX),
                            re.escape(f"descriptor says {mt.OCI_INDEX}, document is {mt.OCI_MANIFEST}")),
    "child_type_disagrees": (child_typed(mt.DOCKER_MANIFEST),
                             re.escape(f"descriptor says {mt.DOCKER_MANIFEST}, document is {mt.OCI_MANIFEST}")),
    "root_not_a_document": ([GOOD[0], index_json(tagged(PAYLOAD, media_type="application/octet-stream")),
                             member(PAYLOAD)], "not an image index or manifest"),
}


def test_the_good_archive_imports(store: Store, tmp_path: Path) -> None:
    """The base every hostile case alters is itself sound."""
    assert import_archive(store, build_tar(tmp_path / "good.tar", GOOD)) == ["x.io/evil:1"]
    assert import_archive(store, build_tar(tmp_path / "typed.tar", child_typed(mt.OCI_MANIFEST))) == ["x.io/evil:1"]
    with_signature = [GOOD[0], index_json(tagged(MANIFEST), tagged(MANIFEST, SIG_TAG)), *GOOD[2:]]
    assert import_archive(store, build_tar(tmp_path / "sig.tar", with_signature)) == ["x.io/evil:1"]
    assert store.tags() == [SIG_TAG, "x.io/evil:1"]
    assert fsck(store).clean


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
    archive = build_tar(tmp_path / "dot.tar", [(f"./{name}", data) for name, data in GOOD])  # type: ignore[misc]
    assert import_archive(store, archive) == ["x.io/evil:1"]
    assert store.blobs.read(Digest.of_bytes(PAYLOAD)) == PAYLOAD


def test_member_named_after_a_stored_blob_is_still_verified(store: Store, store_root: Path,
                                                           tmp_path: Path) -> None:
    import_archive(store, build_tar(tmp_path / "good.tar", GOOD))
    before = tree_snapshot(store_root)
    lying = build_tar(tmp_path / "lying.tar", [*HEAD, (BLOB, b"payloaX")])
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

# -- sizes: checked from the tar header, before a member's bytes are written -----------------------

GiB = 1024 * 1024 * 1024
ZEROS = 128 * 1024 * 1024  # a zstd stream of this many zeros is about 4 KB


@pytest.fixture
def ingest_meter(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes written into ingest/ during the test, counted at the one way in (``BlobStore.writer``)."""
    written = [0]
    make_writer = BlobStore.writer

    def counting_writer(self: BlobStore, *args: Any, **kwargs: Any) -> IngestWriter:
        writer = make_writer(self, *args, **kwargs)
        write = writer.write

        def counted(data: bytes) -> None:
            written[0] += len(data)
            write(data)

        writer.write = counted  # type: ignore[method-assign]
        return writer

    monkeypatch.setattr(BlobStore, "writer", counting_writer)
    return written


class Zeros(io.RawIOBase):
    """``size`` zero bytes, read without holding them."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def sparse(name: str, size: int) -> tarfile.TarInfo:
    """A GNU sparse member (pax format 0.1): declares ``size`` bytes of zeros and stores none."""
    info = tarfile.TarInfo(name)
    info.pax_headers = {"GNU.sparse.map": "0,0", "GNU.sparse.size": str(size)}
    return info


def zstd_tar(path: Path, members: list[tuple[str, bytes | int]]) -> Path:
    """A zstd-compressed tar; an int stands for that many zeros, streamed."""
    with open(path, "wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as out, \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = data if isinstance(data, int) else len(data)
            tar.addfile(info, Zeros(data) if isinstance(data, int) else io.BytesIO(data))
    return path


def index_last(members: list[Any]) -> list[Any]:
    """Blobs first, then oci-layout and index.json: the order of ig's and our own exports."""
    return [m for m in members if str(m[0] if isinstance(m, tuple) else m.name).startswith("blobs/")] + [
        m for m in members if not str(m[0] if isinstance(m, tuple) else m.name).startswith("blobs/")]


@pytest.mark.parametrize("order", ["index_first", "index_last"])
@pytest.mark.parametrize("kind", ["sparse_tar", "zstd_zeros"])
def test_a_member_larger_than_its_descriptor_is_refused_before_it_is_written(
        store: Store, store_root: Path, gadget_tar: Path, tmp_path: Path, ingest_meter: list[int],
        kind: str, order: str) -> None:
    """A few KB of archive that declare GiBs for a 7-byte layer: refused from the tar header."""
    import_archive(store, gadget_tar)
    before = tree_snapshot(store_root)
    if kind == "sparse_tar":
        members: list[Any] = [*HEAD, sparse(BLOB, 2 * GiB)]
        arrange = index_last if order == "index_last" else list
        archive = build_tar(tmp_path / "bomb.tar", arrange(members))
        declared = 2 * GiB
    else:
        zmembers: list[Any] = [*HEAD, (BLOB, ZEROS)]
        arrange = index_last if order == "index_last" else list
        archive = zstd_tar(tmp_path / "bomb.tar.zst", arrange(zmembers))
        declared = ZEROS
    assert archive.stat().st_size < 64 * 1024
    ingest_meter[0] = 0
    with pytest.raises(InvalidArchive, match=f"{BLOB} has {declared} bytes, its descriptor says {len(PAYLOAD)}"):
        import_archive(store, archive)
    assert ingest_meter[0] < 64 * 1024
    assert tree_snapshot(store_root) == before


@pytest.mark.parametrize("kind", ["sparse_tar", "zstd_zeros"])
def test_a_member_nothing_refers_to_is_never_written_past_the_archive_size(
        store: Store, tmp_path: Path, ingest_meter: list[int], kind: str) -> None:
    stray = member(b"nobody refers to this")[0]
    if kind == "sparse_tar":
        archive = build_tar(tmp_path / "a.tar", [sparse(stray, 2 * GiB), *GOOD])
    else:
        archive = zstd_tar(tmp_path / "a.tar.zst", [(stray, ZEROS), *GOOD])  # type: ignore[list-item]
    assert import_archive(store, archive) == ["x.io/evil:1"]
    assert ingest_meter[0] == len(CONFIG) + len(MANIFEST) + len(PAYLOAD)
    assert not store.blobs.has(Digest.parse(stray.replace("blobs/sha256/", "sha256:")))
    assert store.blobs.ingest_files() == []


def test_deferred_members_are_written_once_descriptors_vouch_for_them(store: Store, tmp_path: Path,
                                                                     ingest_meter: list[int]) -> None:
    """index.json last in a zstd archive that expands past its size: members past the archive's size
    wait for a later pass, and a manifest deferred so leads to its layer one pass later."""
    layer = b"gadget " * 200_000  # 1.4 MB; compresses to a few KB
    manifest = document(mediaType=mt.OCI_MANIFEST, config=descriptor(CONFIG, mt.GADGET_CONFIG),
                        layers=[descriptor(layer, mt.GADGET_EBPF)])

    def build(filler_size: int) -> int:
        """Zeros nothing refers to first: they use up the allowance for unreferenced blobs."""
        filler = member(bytes(filler_size))[0]
        members: list[Any] = [(filler, filler_size), member(CONFIG), member(manifest), member(layer),
                              GOOD[0], index_json(tagged(manifest))]
        return zstd_tar(tmp_path / "a.tar.zst", members).stat().st_size

    filler_size = build(0) - 100
    size = build(filler_size)
    assert filler_size + len(CONFIG) <= size < filler_size + len(CONFIG) + len(manifest), "the layout this test needs"
    assert import_archive(store, tmp_path / "a.tar.zst") == ["x.io/evil:1"]
    assert store.blobs.read(Digest.of_bytes(layer)) == layer
    assert ingest_meter[0] == filler_size + len(CONFIG) + len(manifest) + len(layer)
    assert fsck(store).clean and store.blobs.ingest_files() == []


@pytest.mark.parametrize(("written", "imported"), [
    ("trace_open", "ghcr.io/inspektor-gadget/gadget/trace_open:latest"),
    ("trace_open:v1", "ghcr.io/inspektor-gadget/gadget/trace_open:v1"),
    ("localhost:5000/x", "localhost:5000/x:latest"),
])
def test_short_names_are_imported_under_the_name_ig_gives_them(store: Store, tmp_path: Path, written: str,
                                                               imported: str) -> None:
    """A name as a user types it is tagged as ig normalises it: listed, and removable by that name."""
    archive = build_tar(tmp_path / "short.tar", with_layer_image(MANIFEST, written))
    assert import_archive(store, archive) == [imported]
    assert store.tags() == [imported]
    assert str(store.resolve(imported).digest) == f"sha256:{sha(MANIFEST)}"
