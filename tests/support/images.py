"""Synthetic gadget images shaped like ``ig image build`` output, written straight into a store.

An index (amd64, arm64) → one manifest per arch (``artifactType`` gadget, no ``mediaType`` field)
→ a gadget.yaml config and one eBPF layer per arch, with deterministic pseudo-random bytes.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.store import Store


def pseudo_random(size: int, seed: str) -> bytes:
    """Incompressible, reproducible bytes (sha256 in counter mode)."""
    out = bytearray()
    counter = 0
    base = seed.encode()
    while len(out) < size:
        out += hashlib.sha256(base + counter.to_bytes(8, "big")).digest() * 64
        counter += 1
    return bytes(out[:size])


def _compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def make_gadget_image(
    store: Store, image: str, *, layer_size: int = 40_000, seed: str | None = None,
    archs: tuple[str, ...] = ("amd64", "arm64"), shared_layer: bytes | None = None, untagged: bool = False,
) -> Descriptor:
    """Build and tag ``image`` (normalised) in ``store``; returns the root index descriptor.

    ``untagged`` keeps it as an untagged image (a pinned root, as an untagged build is).
    """
    seed = seed or image
    name = image.rsplit("/", 1)[-1].split(":")[0]
    annotations = {"org.opencontainers.image.title": name, "org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
    config = f"name: {name}\ndescription: test gadget {seed}\n".encode()
    config_desc = {"mediaType": mt.GADGET_CONFIG, "digest": str(store.blobs.put(config)), "size": len(config)}
    entries = []
    for arch in archs:
        layer = shared_layer if shared_layer is not None else pseudo_random(layer_size, f"{seed}/{arch}")
        layer_digest = store.blobs.put(layer)
        manifest = {"schemaVersion": 2, "artifactType": mt.GADGET_ARTIFACT, "config": config_desc,
                    "layers": [{"mediaType": mt.GADGET_EBPF, "digest": str(layer_digest), "size": len(layer)}],
                    "annotations": annotations}
        data = _compact(manifest)
        digest = store.blobs.put(data)
        entries.append({"mediaType": mt.OCI_MANIFEST, "digest": str(digest), "size": len(data),
                        "annotations": annotations, "platform": {"architecture": arch, "os": "linux"}})
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries, "annotations": annotations}
    data = _compact(index)
    root = Descriptor(mt.OCI_INDEX, store.blobs.put(data), len(data))
    with store.transaction() as txn:
        if untagged:
            txn.pin(root)
        else:
            txn.tag(str(normalize(image)), root)
    return root


def verify_store(root: Path) -> int:
    """Reopen the store and rehash every blob; returns the number of blobs. Fails on any damage."""
    store = Store.open(root)
    count = 0
    for digest in store.blobs.iter_digests():
        assert store.blobs.rehash(digest) == digest, f"blob {digest} is corrupt"
        count += 1
    leftovers = [p for p in store.blobs.ingest_files() if p.exists()]
    assert not leftovers, f"ingest files left behind: {leftovers}"
    for ref in store.tags():
        desc = store.lookup(ref)
        assert desc is not None
        store.walk([desc])  # every reachable blob is present and verifies
    return count


def graph_digests(store: Store, image: str) -> set[Digest]:
    desc = store.resolve(str(normalize(image)))
    return set(store.walk([desc]))


PROJECT = Path(__file__).resolve().parents[2]
DEMO_SOURCES = PROJECT / "examples" / "trace_demo"
DEMO_IMAGE = "ghcr.io/inspektor-gadget/gadget/trace_demo:latest"
"""The image the suite builds from ``examples/trace_demo``: short name ``trace_demo``, as ig names its own."""
DEMO_SHORT_NAME = "trace_demo"
DEMO_EPOCH = "1700000000"


def build_demo_archive(work: Path) -> Path:
    """Build ``examples/trace_demo`` with clang into a scratch store and export it as ``ig image export`` does.

    The result is an OCI image-layout tar shaped like a real gadget export: an index (amd64, arm64),
    one manifest per arch, the gadget.yaml config and a real eBPF ELF layer (BTF and BTF.ext) per
    arch. ``SOURCE_DATE_EPOCH`` makes it the same bytes on every run on one toolchain.
    """
    from gadgetstore.engine.archive import export_images
    from gadgetstore.engine.build import BuildRequest, build_image

    store_root = work / "build-store"
    request = BuildRequest(gadget_dir=DEMO_SOURCES, source_date_epoch=DEMO_EPOCH)
    build_image(lambda: Store.open(store_root), request, DEMO_IMAGE)
    archive = work / "trace_demo.tar"
    export_images(Store.open(store_root), [str(normalize(DEMO_IMAGE))], archive)
    return archive


@dataclass(frozen=True)
class ArchivedImage:
    """The one tagged image of an OCI-layout tar, read from the tar itself.

    Tests take digests, sizes and dates from here rather than writing them down, because the
    suite's own image is only the same bytes within one toolchain (another clang, other ELFs).
    """

    path: Path
    reference: str
    root: Descriptor
    created: str
    manifests: dict[str, Descriptor]  # by architecture
    layers: dict[str, Descriptor]  # the eBPF layer, by architecture
    blobs: dict[Digest, bytes]

    @property
    def elves(self) -> dict[str, bytes]:
        """The eBPF ELF layer of each architecture."""
        return {arch: self.blobs[layer.digest] for arch, layer in self.layers.items()}


def read_archived_image(path: Path) -> ArchivedImage:
    """Walk ``index.json`` → index → one manifest per arch → eBPF layer, without a store."""
    with tarfile.open(path) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}

        def member(name: str) -> bytes:
            stream = tar.extractfile(members[name])
            assert stream is not None
            return stream.read()

        blobs = {Digest.parse(name.removeprefix("blobs/").replace("/", ":")): member(name)
                 for name in members if name.startswith("blobs/")}
        (entry, *_) = json.loads(member("index.json"))["manifests"]
    root = Descriptor.from_json(entry)
    index = json.loads(blobs[root.digest])
    manifests: dict[str, Descriptor] = {}
    layers: dict[str, Descriptor] = {}
    for child in index["manifests"]:
        manifest = Descriptor.from_json(child)
        arch = manifest.architecture
        assert arch is not None, f"{path}: manifest {manifest.digest} names no architecture"
        manifests[arch] = manifest.bare()
        doc = json.loads(blobs[manifest.digest])
        (layer,) = [Descriptor.from_json(d) for d in doc["layers"] if d["mediaType"] == mt.GADGET_EBPF]
        layers[arch] = layer
    return ArchivedImage(path, root.annotations[mt.ANNOTATION_REF_NAME], root.bare(),
                         index["annotations"][mt.ANNOTATION_CREATED], manifests, layers, blobs)
