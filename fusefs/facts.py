"""What the model needs from the disk, named as values so that loading can happen elsewhere.

The model never reads the store. When it needs something it raises :class:`Missing` with the
facts it lacks; the adapter loads them in a worker thread (:mod:`.loader`) and retries. This keeps
the model pure and every disk access off the trio thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.images import ArchManifest

LAYER_FILES = {
    mt.GADGET_EBPF: "program.bpf.o",
    mt.GADGET_WASM: "program.wasm",
    mt.GADGET_BTFGEN: "btfgen.tar.gz",
}


@dataclass(frozen=True)
class ImageFact:
    """The root document and per-architecture manifests of one image (immutable by digest).

    ``arch`` is part of the key because descriptors compare without their platform, and a
    manifest reached through its index is shown under that index's architecture.
    """

    root: Descriptor
    arch: str | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", self.root.architecture if self.root.is_manifest else None)


@dataclass(frozen=True)
class ExtraFact:
    """The files of ``extra-info/`` (relative path → bytes, see :mod:`.textfiles`) for one
    architecture manifest, from ``image_extra_info`` as computed for the name ``typed``."""

    typed: str
    manifest_digest: Digest
    manifest: ArchManifest = field(compare=False, hash=False)


@dataclass(frozen=True)
class DocFact:
    """Whether a blob is a manifest or index: its descriptor, or None."""

    digest: Digest


@dataclass(frozen=True)
class BlobStatFact:
    """The :class:`BlobStat` of a blob file, or None when it is absent."""

    digest: Digest


@dataclass(frozen=True)
class BlobListFact:
    """Every blob of one algorithm: hex → :class:`BlobStat`."""

    algorithm: str


Fact = ImageFact | ExtraFact | DocFact | BlobStatFact | BlobListFact


@dataclass(frozen=True)
class BlobStat:
    size: int
    mtime_ns: int
    """When the blob entered the store (its file was renamed into ``blobs/``)."""


@dataclass(frozen=True)
class ArchFiles:
    """The files of one architecture of an image, as descriptors of the blobs that back them."""

    arch: str
    manifest: ArchManifest
    created: str
    files: tuple[tuple[str, Descriptor], ...]

    @classmethod
    def of(cls, manifest: ArchManifest) -> ArchFiles:
        files: list[tuple[str, Descriptor]] = [("manifest.json", manifest.desc)]
        config = manifest.config
        if config is not None and config.media_type == mt.GADGET_CONFIG:
            files.append(("metadata.yaml", config))
        for media_type, name in LAYER_FILES.items():
            layer = manifest.layer(media_type)
            if layer is not None:
                files.append((name, layer))
        created = manifest.annotations.get(mt.ANNOTATION_CREATED, "")
        return cls(manifest.arch, manifest, created if isinstance(created, str) else "", tuple(files))


@dataclass(frozen=True)
class ImageData:
    root: Descriptor
    created: str
    arches: tuple[ArchFiles, ...]
    stored_ns: int | None = None
    """When the root document entered the store (the last resort for the image's time)."""

    def arch(self, name: str) -> ArchFiles | None:
        return next((a for a in self.arches if a.arch == name), None)

    @classmethod
    def of(cls, root: Descriptor, root_doc: dict[str, Any], manifests: list[ArchManifest],
           stored_ns: int | None = None) -> ImageData:
        annotations = root_doc.get("annotations")
        created = annotations.get(mt.ANNOTATION_CREATED, "") if isinstance(annotations, dict) else ""
        return cls(root, created if isinstance(created, str) else "", tuple(ArchFiles.of(m) for m in manifests),
                   stored_ns)


@dataclass(frozen=True)
class LoadFailed:
    """A load that raised; kept briefly so a broken image does not get re-read on every request."""

    error: Exception
