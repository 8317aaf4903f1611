"""The pure path → node model, fed with hand-made facts instead of a store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import InvalidManifest
from gadgetstore.engine.images import ArchManifest
from gadgetstore.fusefs.catalog import MountCatalog
from gadgetstore.fusefs.facts import (
    BlobListFact,
    BlobStat,
    BlobStatFact,
    DocFact,
    ExtraFact,
    Fact,
    ImageData,
    ImageFact,
    LoadFailed,
)
from gadgetstore.fusefs.inodes import InodeTable
from gadgetstore.fusefs.live import retimed_dirs, stale_entries
from gadgetstore.fusefs.model import MAX_EXTRA_INFO, FsModel, Missing, NotFound
from gadgetstore.fusefs.nodes import Kind

CREATED_NS = 1704164645 * 10**9  # 2024-01-02T03:04:05Z

T = TypeVar("T")


def _desc(media_type: str, data: bytes, **extra: Any) -> Descriptor:
    return Descriptor(media_type, Digest("sha256", hashlib.sha256(data).hexdigest()), len(data), extra)


class Image:
    """An index with amd64/arm64 manifests, kept as parsed documents."""

    def __init__(self, name: str, arches: tuple[str, ...] = ("amd64", "arm64"), wasm: bool = False,
                 created: str = "2024-01-02T03:04:05Z", stored_ns: int | None = None) -> None:
        self.config = _desc(mt.GADGET_CONFIG, f"name: {name}\n".encode())
        self.manifests: list[ArchManifest] = []
        self.layers: dict[str, Descriptor] = {}
        for arch in arches:
            layer = _desc(mt.GADGET_WASM if wasm else mt.GADGET_EBPF, f"{name}-{arch}".encode())
            self.layers[arch] = layer
            doc = {"schemaVersion": 2, "config": self.config.to_json(), "layers": [layer.to_json()],
                   "annotations": {mt.ANNOTATION_CREATED: created if arch == "amd64" else f"created-{arch}"}}
            desc = _desc(mt.OCI_MANIFEST, json.dumps(doc).encode(), platform={"architecture": arch, "os": "linux"})
            self.manifests.append(ArchManifest(arch, desc, doc))
        self.root_doc = {"manifests": [m.desc.to_json() for m in self.manifests],
                         "annotations": {mt.ANNOTATION_CREATED: "created-index"}}
        self.root = _desc(mt.OCI_INDEX, json.dumps(self.root_doc).encode())
        self.data = ImageData.of(self.root, self.root_doc, self.manifests, stored_ns)


class Facts:
    """Answers the model's questions from in-memory images and counts what was asked."""

    def __init__(self, *images: Image) -> None:
        self.images = {i.root.digest: i for i in images}
        self.blobs: dict[str, BlobStat] = {}
        self.asked: list[Fact] = []

    def value(self, fact: Fact) -> Any:
        self.asked.append(fact)
        if isinstance(fact, ImageFact):
            if fact.root.digest in self.images:
                return self.images[fact.root.digest].data
            manifest = next(m for i in self.images.values() for m in i.manifests if m.desc.digest == fact.root.digest)
            return ImageData.of(fact.root, manifest.doc, [ArchManifest(manifest.arch, fact.root, manifest.doc)])
        if isinstance(fact, ExtraFact):
            return {"oci.tag": fact.typed.encode(), "ebpf.maps": str(fact.manifest_digest).encode(),
                    "raw/oci.tag": b"raw", "programs/p.txt": b"listing\n", "..": b""}
        if isinstance(fact, DocFact):
            return None
        if isinstance(fact, BlobStatFact):
            return self.blobs.get(fact.digest.hex)
        if isinstance(fact, BlobListFact):
            return dict(self.blobs)
        raise AssertionError(fact)

    def answer(self, model: FsModel, question: Callable[[], T]) -> T:
        for _ in range(5):
            try:
                return question()
            except Missing as missing:
                for fact in missing.facts:
                    model.add_fact(fact, self.value(fact))
        raise AssertionError("model keeps asking")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _catalog(times: dict[str, int] | None = None, **tags: Image) -> MountCatalog:
    return MountCatalog.build({ref.replace("__", ":"): img.root.to_json() for ref, img in tags.items()}, (), times)


@pytest.fixture
def gadget() -> Image:
    return Image("trace_tcp")


@pytest.fixture
def model(gadget: Image) -> FsModel:
    catalog = MountCatalog.build({"ghcr.io/inspektor-gadget/gadget/trace_tcp:latest": gadget.root.to_json()})
    return FsModel(catalog, "amd64")


def names(facts: Facts, model: FsModel, path: str) -> list[str]:
    node = facts.answer(model, lambda: model.resolve(path.split("/") if path else []))
    return [n for n, _ in facts.answer(model, lambda: model.children(node))]


def test_root_and_namespaces(model: FsModel, gadget: Image) -> None:
    facts = Facts(gadget)
    assert names(facts, model, "ghcr.io/inspektor-gadget/gadget") == ["trace_tcp"]
    assert names(facts, model, ".store") == ["blobs", "by-digest"]
    assert facts.asked == []  # the catalog's names need no loading
    assert names(facts, model, "trace_tcp") == ["latest"]
    assert facts.asked == [ImageFact(gadget.root)]  # an image's time is in its documents
    assert names(facts, model, "") == [".store", "README", "ghcr.io", "tags", "trace_tcp"]
    assert model.resolve(["tags"]).data == (  # image list's rows: they need the host's creation time
        f"REPOSITORY TAG DIGEST CREATED\ntrace_tcp latest {gadget.root.digest} 2024-01-02T03:04:05Z\n".encode())
    readme = model.resolve(["README"]).data or b""
    assert b"by short name: trace_tcp\n" in readme and b"every image by its full name: ghcr.io\n" in readme
    assert readme.endswith(b"\n") and b"Pull on access" not in readme


def test_a_listing_asks_for_all_its_images_at_once() -> None:
    images = [Image(f"g{i}") for i in range(3)]
    model = FsModel(_catalog(**{f"example.com/r__v{i}": img for i, img in enumerate(images)}), "amd64")
    node = model.resolve(["example.com", "r"])
    with pytest.raises(Missing) as missing:
        model.children(node)
    assert sorted(missing.value.facts, key=str) == sorted((ImageFact(i.root) for i in images), key=str)


def test_the_tags_table_is_image_lists(gadget: Image) -> None:
    riscv_only = Image("r", arches=("riscv64",))
    tags = {"example.com/b:v1": gadget, "example.com/a:v2": gadget, "example.com/r:v1": riscv_only,
            "sha256-" + "a" * 64 + ".sig": gadget, "example.com/short": gadget}
    model = FsModel(MountCatalog.build({ref: img.root.to_json() for ref, img in tags.items()}), "amd64")
    facts = Facts(gadget, riscv_only)
    table = facts.answer(model, lambda: model.resolve(["tags"])).data
    assert table == (f"REPOSITORY TAG DIGEST CREATED\nexample.com/a v2 {gadget.root.digest} 2024-01-02T03:04:05Z\n"
                     f"example.com/b v1 {gadget.root.digest} 2024-01-02T03:04:05Z\n").encode()
    assert len(facts.asked) == 2  # every image at once, in one round


def test_image_directory(model: FsModel, gadget: Image) -> None:
    facts = Facts(gadget)
    assert names(facts, model, "trace_tcp/latest") == [
        "arch", "created", "digest", "extra-info", "index.json", "manifest.json", "metadata.yaml", "program.bpf.o",
    ]
    digest = model.resolve(["trace_tcp", "latest", "digest"])
    assert digest.data == f"{gadget.root.digest}\n".encode() and digest.size == len(digest.data)
    assert model.resolve(["trace_tcp", "latest", "created"]).data == b"2024-01-02T03:04:05Z\n"
    program = model.resolve(["trace_tcp", "latest", "program.bpf.o"])
    assert (program.blob, program.size) == (gadget.layers["amd64"].digest, gadget.layers["amd64"].size)
    index = model.resolve(["trace_tcp", "latest", "index.json"])
    assert (index.blob, index.size) == (gadget.root.digest, gadget.root.size)
    assert model.resolve(["trace_tcp", "latest", "metadata.yaml"]).blob == gadget.config.digest
    assert [f for f in facts.asked if not isinstance(f, ImageFact)] == []


def test_arch_directories(model: FsModel, gadget: Image) -> None:
    facts = Facts(gadget)
    assert names(facts, model, "trace_tcp/latest/arch") == ["amd64", "arm64"]
    assert names(facts, model, "trace_tcp/latest/arch/arm64") == [
        "created", "digest", "extra-info", "index.json", "manifest.json", "metadata.yaml", "program.bpf.o",
    ]
    arm = gadget.manifests[1]
    assert model.resolve(["trace_tcp", "latest", "arch", "arm64", "digest"]).data == f"{arm.desc.digest}\n".encode()
    arm_program = model.resolve(["trace_tcp", "latest", "arch", "arm64", "program.bpf.o"])
    assert arm_program.blob == gadget.layers["arm64"].digest


def test_extra_info_uses_the_name_as_typed(model: FsModel, gadget: Image) -> None:
    facts = Facts(gadget)
    # files first-level, "programs" and "raw" as directories; an unsafe name is dropped
    assert names(facts, model, "trace_tcp/latest/extra-info") == ["ebpf.maps", "oci.tag", "programs", "raw"]
    assert names(facts, model, "trace_tcp/latest/extra-info/programs") == ["p.txt"]
    assert names(facts, model, "trace_tcp/latest/extra-info/raw") == ["oci.tag"]
    raw = model.resolve(["trace_tcp", "latest", "extra-info", "raw", "oci.tag"])
    assert raw.data == b"raw" and raw.mtime_ns == CREATED_NS
    short = facts.answer(model, lambda: model.resolve(["trace_tcp", "latest", "extra-info", "oci.tag"]))
    full_path = ["ghcr.io", "inspektor-gadget", "gadget", "trace_tcp", "latest", "extra-info", "oci.tag"]
    full = facts.answer(model, lambda: model.resolve(full_path))
    assert short.data == b"trace_tcp:latest"
    assert full.data == b"ghcr.io/inspektor-gadget/gadget/trace_tcp:latest"
    assert short.key != full.key


def test_host_arch_missing_leaves_only_the_arch_dirs(gadget: Image) -> None:
    model = FsModel(_catalog(**{"example.com/g__v1": gadget}), "riscv64")
    facts = Facts(gadget)
    assert names(facts, model, "example.com/g/v1") == ["arch", "created", "digest", "index.json"]
    assert model.resolve(["example.com", "g", "v1", "created"]).data == b"created-index\n"


def test_wasm_program() -> None:
    img = Image("w", wasm=True)
    model = FsModel(_catalog(**{"example.com/w__v1": img}), "amd64")
    assert "program.wasm" in names(Facts(img), model, "example.com/w/v1")


def test_blob_files_share_a_key_across_paths(model: FsModel, gadget: Image) -> None:
    facts = Facts(gadget)
    a = facts.answer(model, lambda: model.resolve(["trace_tcp", "latest", "program.bpf.o"]))
    b = facts.answer(model, lambda: model.resolve(["trace_tcp", "latest", "arch", "amd64", "program.bpf.o"]))
    assert a.key == b.key
    assert model.resolve(["trace_tcp", "latest", "arch"]).key != model.resolve(["trace_tcp", "latest"]).key


def test_unknown_names(model: FsModel, gadget: Image) -> None:
    facts = Facts(gadget)
    for path in (["nope"], ["trace_tcp", "v9"], ["trace_tcp", "latest", "nope"], [".store", "blobs", "md5"],
                 [".store", "by-digest", "sha256", "zz"], ["trace_tcp", "latest", "arch", "s390x"],
                 ["blobs"], ["by-digest"], [".store", "nope"]):
        with pytest.raises(NotFound):
            facts.answer(model, lambda p=path: model.resolve(p))  # type: ignore[misc]


def test_by_digest(model: FsModel, gadget: Image) -> None:
    facts = Facts(gadget)
    listing = names(facts, model, ".store/by-digest/sha256")
    assert listing == sorted([gadget.root.digest.hex] + [m.desc.digest.hex for m in gadget.manifests])
    node = facts.answer(model, lambda: model.resolve([".store", "by-digest", "sha256", gadget.root.digest.hex]))
    assert node.kind is Kind.IMAGE and node.image is not None
    assert node.image.typed == "ghcr.io/inspektor-gadget/gadget/trace_tcp:latest"
    other = Digest("sha256", "ab" * 32)
    with pytest.raises(NotFound):
        facts.answer(model, lambda: model.resolve([".store", "by-digest", "sha256", other.hex]))
    assert facts.asked[-1] == DocFact(other)
    arm = gadget.manifests[1]
    fresh = FsModel(model.catalog, "amd64")
    node = Facts(gadget).answer(fresh, lambda: fresh.resolve([".store", "by-digest", "sha256", arm.desc.digest.hex]))
    assert node.image is not None and node.image.root.architecture == "arm64"  # same answer without a prior listing


def test_by_digest_takes_a_unique_prefix_of_a_root(model: FsModel, gadget: Image) -> None:
    """``.store/by-digest/sha256/<12+ hex digits>`` is the root with that prefix (as the CLI takes it);
    it is not listed."""
    facts = Facts(gadget)
    prefix = gadget.root.digest.hex[:12]
    node = facts.answer(model, lambda: model.resolve([".store", "by-digest", "sha256", prefix]))
    assert node.kind is Kind.IMAGE and node.image is not None and node.image.root.digest == gadget.root.digest
    assert node.path == (".store", "by-digest", "sha256", prefix)
    assert prefix not in names(facts, model, ".store/by-digest/sha256")
    for name in (prefix[:11], gadget.manifests[0].desc.digest.hex[:12], "0" * 12, prefix.upper()):
        with pytest.raises(NotFound):
            facts.answer(model, lambda n=name: model.resolve([".store", "by-digest", "sha256", n]))  # type: ignore[misc]


def test_blobs_dir_and_volatile_expiry(gadget: Image) -> None:
    clock = Clock()
    model = FsModel(MountCatalog(), "amd64", clock)
    facts = Facts()
    facts.blobs = {"ab" * 32: BlobStat(5, 7)}
    assert names(facts, model, ".store/blobs/sha256") == ["ab" * 32]
    blob = facts.answer(model, lambda: model.resolve([".store", "blobs", "sha256", "ab" * 32]))
    assert (blob.size, blob.mtime_ns) == (5, 7)  # a blob shows when it entered the store
    facts.blobs = {}
    assert names(facts, model, ".store/blobs/sha256") == ["ab" * 32]  # still within the TTL
    clock.now += 2
    assert names(facts, model, ".store/blobs/sha256") == []
    with pytest.raises(NotFound):
        facts.answer(model, lambda: model.resolve([".store", "blobs", "sha256", "ab" * 32]))


def test_failed_loads_raise_then_expire(model: FsModel, gadget: Image) -> None:
    clock = Clock()
    model.clock = clock
    model.add_fact(ImageFact(gadget.root), LoadFailed(InvalidManifest("broken")))
    with pytest.raises(InvalidManifest):
        model.resolve(["trace_tcp", "latest"])
    clock.now += 2
    with pytest.raises(Missing):
        model.resolve(["trace_tcp", "latest"])


def test_extra_info_cache_is_bounded(model: FsModel, gadget: Image) -> None:
    manifest = gadget.manifests[0]
    for i in range(MAX_EXTRA_INFO + 5):
        model.add_fact(ExtraFact(f"t{i}", manifest.desc.digest, manifest), {"k": b"v"})
    with pytest.raises(Missing):
        model.get_fact(ExtraFact("t0", manifest.desc.digest, manifest))
    assert model.get_fact(ExtraFact(f"t{MAX_EXTRA_INFO}", manifest.desc.digest, manifest)) == {"k": b"v"}


def test_retag_and_removal_make_handed_out_names_stale(gadget: Image) -> None:
    other = Image("other")
    model = FsModel(_catalog(**{"example.com/a__v1": gadget, "example.com/b__v1": gadget}), "amd64")
    table = InodeTable(model.root)
    walked: dict[str, int] = {}
    facts = Facts(gadget)
    for path in (["example.com"], ["example.com", "a"], ["example.com", "a", "v1"], ["example.com", "b"],
                 ["example.com", "b", "v1"]):
        parent = model.resolve(path[:-1])
        ino = table.assign(facts.answer(model, lambda p=parent, n=path[-1]: model.child(p, n)))  # type: ignore[misc]
        table.remember(ino, walked.get("/".join(path[:-1]), 1), path[-1])
        walked["/".join(path)] = ino
    model.set_catalog(_catalog(**{"example.com/a__v1": other}))
    stale = stale_entries(table, model)  # from the catalog alone: "other" was never loaded
    assert stale == [
        (walked["example.com/a"], "v1", walked["example.com/a/v1"]),
        (walked["example.com/b"], "v1", walked["example.com/b/v1"]),
        (walked["example.com"], "b", walked["example.com/b"]),
    ]


def test_by_digest_forgets_the_manifests_of_removed_images(model: FsModel, gadget: Image) -> None:
    facts = Facts(gadget)
    arm = gadget.manifests[1].desc.digest.hex
    facts.answer(model, lambda: model.resolve([".store", "by-digest", "sha256", arm]))
    model.set_catalog(MountCatalog())
    with pytest.raises(NotFound):
        facts.answer(model, lambda: model.resolve([".store", "by-digest", "sha256", arm]))
    assert names(facts, model, ".store/by-digest/sha256") == []


def test_times_of_images_and_the_directories_above_them() -> None:
    created, untimed, unparsable = Image("c"), Image("u", created=""), Image("x", created="yesterday")
    stored = Image("s", created="", stored_ns=55)
    times = {"example.com/r/c:v1": 10, "example.com/r/u:v1": 20, "example.com/r/u:v2": 30,
             "example.com/q/s:v1": 5}
    model = FsModel(_catalog(times, **{"example.com/r/c__v1": created, "example.com/r/u__v1": untimed,
                                       "example.com/r/u__v2": untimed, "example.com/r/x__v1": unparsable,
                                       "example.com/q/s__v1": stored}), "amd64")
    facts = Facts(created, untimed, unparsable, stored)

    def mtime(path: str) -> int | None:
        return facts.answer(model, lambda: model.resolve(path.split("/"))).mtime_ns

    assert mtime("example.com/r/c/v1") == CREATED_NS  # the creation time wins over the commit time
    assert mtime("example.com/r/c/v1/arch/arm64/program.bpf.o") == CREATED_NS  # and covers the whole image
    assert mtime("example.com/r/u/v1") == 20 and mtime("example.com/r/u/v2") == 30  # else each tag's commit
    assert mtime("example.com/r/u/v2/extra-info/programs/p.txt") == 30
    assert mtime("example.com/r/x/v1") is None  # unparsable, and never committed with a time: the mount's
    assert model.resolve(["example.com", "r", "x", "v1", "created"]).data == b"yesterday\n"
    assert mtime("example.com/q/s/v1") == 5
    assert mtime("example.com/r") == 30 and mtime("example.com") == 30  # the newest commit below
    assert mtime(f".store/by-digest/sha256/{untimed.root.digest.hex}") == 20  # its first tag
    no_commits = FsModel(_catalog(**{"example.com/q/s__v1": stored}), "amd64")
    assert Facts(stored).answer(no_commits, lambda: no_commits.resolve(["example.com", "q", "s", "v1"])).mtime_ns == 55
    # the same blob in two images of different times is two inodes (keys), each with its own time
    a = facts.answer(model, lambda: model.resolve(["example.com", "r", "u", "v1", "index.json"]))
    b = facts.answer(model, lambda: model.resolve(["example.com", "r", "u", "v2", "index.json"]))
    assert a.blob == b.blob and a.key != b.key


def test_a_new_commit_retimes_the_directories_above_it(gadget: Image) -> None:
    other = Image("other", created="")
    model = FsModel(_catalog({"example.com/a:v1": 10}, **{"example.com/a__v1": gadget}), "amd64")
    facts = Facts(gadget, other)
    table = InodeTable(model.root)
    ns = table.assign(model.resolve(["example.com"]))
    table.remember(ns, 1, "example.com")
    image = table.assign(facts.answer(model, lambda: model.resolve(["example.com", "a", "v1"])))
    table.remember(image, table.assign(model.resolve(["example.com", "a"])), "v1")
    model.set_catalog(_catalog({"example.com/a:v1": 10, "example.com/b:v1": 40},
                               **{"example.com/a__v1": gadget, "example.com/b__v1": other}))
    assert [(ino, node.mtime_ns) for ino, node in retimed_dirs(table, model)] == [(ns, 40)]
    assert stale_entries(table, model) == []  # the same directory, only a new time


def test_pending_directories_list_nothing_and_find_what_was_pulled(gadget: Image) -> None:
    model = FsModel(MountCatalog(), "amd64", pull_on_access=True)
    pending = model.pending(("example.com", "a"))
    with pytest.raises(NotFound):
        model.children(pending)
    with pytest.raises(NotFound):
        model.child(pending, "v1")
    model.set_catalog(_catalog(**{"example.com/a__v1": gadget}))
    node = Facts(gadget).answer(model, lambda: model.child(pending, "v1"))
    assert node.kind is Kind.IMAGE and node.path == ("example.com", "a", "v1")
    assert b"Pull on access is on" in (model.resolve(["README"]).data or b"")
