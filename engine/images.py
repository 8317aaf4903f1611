"""Gadget images on top of the store: host-arch selection, list rows, the ``oci.*`` extra info."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from typing import Any

from . import mediatypes as mt
from . import reference
from .analysis.entries import ExtraInfo
from .descriptor import Descriptor
from .errors import GadgetStoreError, ImageNotFound, InvalidManifest
from .store import Store

"""Extra-info key → (contentType, content), as ``ig image inspect`` produces it."""

_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_arch() -> str:
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)


@dataclass(frozen=True)
class ArchManifest:
    arch: str
    desc: Descriptor
    doc: dict[str, Any]

    def layer(self, media_type: str) -> Descriptor | None:
        for item in self.doc.get("layers") or []:
            desc = Descriptor.from_json(item, f"manifest {self.desc.digest}: layer")
            if desc.media_type == media_type:
                return desc
        return None

    @property
    def config(self) -> Descriptor | None:
        cfg = self.doc.get("config")
        return Descriptor.from_json(cfg, f"manifest {self.desc.digest}: config") if cfg else None

    @property
    def annotations(self) -> dict[str, str]:
        ann = self.doc.get("annotations")
        return ann if isinstance(ann, dict) else {}


def arch_manifests(store: Store, root: Descriptor) -> list[ArchManifest]:
    """One entry per architecture of an image index (a lone manifest counts as the host's)."""
    if root.is_manifest:
        return [ArchManifest(host_arch(), root, store.read_document(root))]
    if not root.is_index:
        raise InvalidManifest(f"image {root.digest} is neither an image index nor a manifest")
    index = store.read_document(root)
    out: dict[str, ArchManifest] = {}  # the first entry of each architecture
    for i, item in enumerate(index.get("manifests") or []):
        desc = Descriptor.from_json(item, f"index {root.digest}: manifests[{i}]")
        arch = desc.architecture
        if arch is None or not desc.is_manifest or arch in out:
            continue
        out[arch] = ArchManifest(arch, desc, store.read_document(desc))
    return list(out.values())


def host_manifest(store: Store, root: Descriptor, arch: str | None = None) -> ArchManifest:
    arch = arch or host_arch()
    for manifest in arch_manifests(store, root):
        if manifest.arch == arch:
            return manifest
    raise ImageNotFound(f"image {root.digest} has no manifest for architecture {arch}")


@dataclass(frozen=True)
class ImageRow:
    repository: str
    tag: str
    digest: str
    created: str


def listed_reference(ref_text: str) -> reference.Reference | None:
    """The reference of a tag that ``image list`` shows; None for one it does not (as in ig, tags that
    are not full references, such as ``sha256-<hex>.sig``, are not images)."""
    try:
        ref = reference.normalize(ref_text)
    except GadgetStoreError:
        return None
    return ref if str(ref) == ref_text else None


def image_row(ref: reference.Reference, desc: Descriptor, created: str) -> ImageRow:
    return ImageRow(reference.display_repository(ref.repository), ref.tag_or_latest, str(desc.digest), created)


def list_images(store: Store) -> tuple[list[ImageRow], list[str]]:
    """Rows for ``image list`` sorted by reference, and warnings for images that were skipped."""
    rows: list[ImageRow] = []
    warnings: list[str] = []
    for ref_text in store.tags():
        ref = listed_reference(ref_text)
        desc = store.lookup(ref_text) if ref is not None else None
        if ref is None or desc is None:
            continue
        try:
            created = host_manifest(store, desc).annotations.get(mt.ANNOTATION_CREATED, "")
        except GadgetStoreError as err:
            warnings.append(f"skipping {ref_text}: {err}")
            continue
        rows.append(image_row(ref, desc, created))
    return rows, warnings


def oci_extra_info(store: Store, typed_image: str, manifest: ArchManifest) -> ExtraInfo:
    """The ``oci.*`` keys of ``image inspect``, computed as ig does (repository/tag as typed)."""
    typed = reference.parse(typed_image)
    info: ExtraInfo = {
        "oci.manifest": ("application/json", json.dumps(manifest.doc, separators=(",", ":")).encode()),
        "oci.repository": ("text/plain", typed.repository.encode()),
        "oci.tag": ("text/plain", typed.tag_or_latest.encode()),
        "oci.created": ("text/plain", manifest.annotations.get(mt.ANNOTATION_CREATED, "").encode()),
    }
    config = manifest.config
    if config is not None:
        info["oci.digest"] = ("text/plain", str(config.digest).encode())
        if config.media_type == mt.GADGET_CONFIG:
            info["oci.metadata"] = ("text/yaml", store.blobs.read(config.digest, max_size=mt.MAX_MANIFEST_BYTES))
    return info
