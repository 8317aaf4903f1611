"""Building test stores directly through the store API (no CLI), cheaply and deterministically."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store
from tests.support.images import read_archived_image


def import_layout_tar(store: Store, tar_path: Path, ref: str | None = None) -> Descriptor:
    """Put every blob of an OCI-layout tar into ``store`` and tag its first index entry."""
    with tarfile.open(tar_path) as tar:
        index: dict[str, Any] = {}
        for member in tar.getmembers():
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.startswith("blobs/"):
                alg, hexpart = member.name.split("/")[1:3]
                store.blobs.put(data, Digest.parse(f"{alg}:{hexpart}"))
            elif member.name == "index.json":
                index = json.loads(data)
    entry = index["manifests"][0]
    desc = Descriptor.from_json(entry).with_annotations(None)
    name = ref or entry["annotations"][mt.ANNOTATION_REF_NAME]
    with store.transaction() as txn:
        txn.tag(name, desc)
    return desc


_real_elves: dict[str, bytes] = {}
_real_elves_archive: list[Path] = []

_API = b"gadgetAPIVersion"
WASM_MODULE = (b"\0asm\x01\0\0\0" + bytes([1, 5, 1, 0x60, 0, 1, 0x7F]) + bytes([3, 2, 1, 0])
               + bytes([7, len(_API) + 4, 1, len(_API)]) + _API + bytes([0, 0])
               + bytes([10, 6, 1, 4, 0, 0x41, 1, 0x0B]))
"""The smallest wasm gadget the analysis accepts: it exports ``gadgetAPIVersion`` returning 1."""


def use_real_elves(archive: Path) -> None:
    """Take the eBPF layers of :func:`make_gadget` from ``archive`` (the suite's own image)."""
    _real_elves.clear()
    _real_elves.update(read_archived_image(archive).elves)
    _real_elves_archive[:] = [archive]


def real_elves_archive() -> Path:
    """The archive given to :func:`use_real_elves`, for a second process to load the same layers."""
    assert _real_elves_archive, "use_real_elves() was not called (tests/fusefs/conftest.py does it)"
    return _real_elves_archive[0]


def fixture_elf(arch: str) -> bytes:
    """The real eBPF ELF layer for ``arch`` of the archive given to :func:`use_real_elves`."""
    assert _real_elves, "use_real_elves() was not called (tests/fusefs/conftest.py does it)"
    return _real_elves[arch]


def _put_json(store: Store, doc: dict[str, Any]) -> tuple[Digest, int]:
    data = json.dumps(doc, separators=(",", ":")).encode()
    return store.blobs.put(data), len(data)


def make_gadget(
    store: Store,
    name: str,
    *,
    program: bytes | None = None,
    arches: tuple[str, ...] = ("amd64", "arm64"),
    created: str = "2024-01-02T03:04:05Z",
    wasm: bytes | None = None,
    btfgen: bytes | None = None,
) -> Descriptor:
    """A multi-arch gadget image (index → manifests → config + layers); returns the root.

    The eBPF layers are the fixture's real ELFs, shared by every image, so their analysis is done
    once per store; the config (and so every manifest and index) is unique to ``name``.
    """
    config_data = f"name: {name}\ndescription: test gadget\n".encode()
    config = {"mediaType": mt.GADGET_CONFIG, "digest": str(store.blobs.put(config_data)), "size": len(config_data)}
    manifests = []
    for arch in arches:
        layers = []
        ebpf = program if program is not None else fixture_elf(arch)
        for media_type, payload in ((mt.GADGET_EBPF, ebpf), (mt.GADGET_WASM, wasm), (mt.GADGET_BTFGEN, btfgen)):
            if payload is not None:
                layers.append({"mediaType": media_type, "digest": str(store.blobs.put(payload)), "size": len(payload)})
        manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config, "layers": layers,
                    "annotations": {mt.ANNOTATION_CREATED: created}}
        digest, size = _put_json(store, manifest)
        manifests.append({"mediaType": mt.OCI_MANIFEST, "digest": str(digest), "size": size,
                          "platform": {"architecture": arch, "os": "linux"}})
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests,
             "annotations": {mt.ANNOTATION_CREATED: created}}
    digest, size = _put_json(store, index)
    return Descriptor(mt.OCI_INDEX, digest, size)


def tag(store: Store, refs: dict[str, Descriptor]) -> None:
    with store.transaction() as txn:
        for ref, desc in refs.items():
            txn.tag(ref, desc)


def untag(store: Store, *refs: str) -> None:
    with store.transaction() as txn:
        for ref in refs:
            txn.untag(ref)
