"""Gadget images on top of the store: host-arch selection, list rows, the ``oci.*`` extra info."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

from . import mediatypes as mt
from . import reference
from .analysis.entries import ExtraInfo
from .blobstore import BlobNotFound
from .descriptor import Descriptor
from .errors import GadgetStoreError, ImageNotFound, InvalidManifest
from .gojson import go_json
from .indexjson import go_descriptor_fields
from .resolve import StoreImages, is_digest_only
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


NONE = "<none>"
"""Repository and tag of an untagged image in ``image list --all``, as Docker shows a dangling image."""


def list_images(store: Store, untagged: bool = False) -> tuple[list[ImageRow], list[str]]:
    """Rows for ``image list`` sorted by reference, and warnings for images that were skipped.

    With ``untagged``, the untagged images (untagged builds, pulls by digest) follow, by digest.
    """
    rows: list[ImageRow] = []
    warnings: list[str] = []
    if untagged:
        images = StoreImages.read(store)
        for digest in sorted(images.untagged):
            desc = images.by_digest[digest]
            try:
                created = host_manifest(store, desc).annotations.get(mt.ANNOTATION_CREATED, "")
            except BlobNotFound:
                continue  # an entry ig's gc left behind: not an image any more
            except GadgetStoreError as err:
                warnings.append(f"skipping untagged {digest}: {err}")
                continue
            rows.append(ImageRow(NONE, NONE, str(digest), created))
    tagged, tag_warnings = _tagged_rows(store)
    return tagged + rows, tag_warnings + warnings


def _tagged_rows(store: Store) -> tuple[list[ImageRow], list[str]]:
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


def go_manifest_json(doc: dict[str, Any]) -> bytes:
    """``oci.manifest`` as ig makes it (pkg/operators/oci-handler/extrainfo.go: ``json.Marshal`` of
    the ocispec.Manifest it read): the struct's field order, unknown fields dropped, annotations
    sorted, HTML-escaped; a manifest without layers has ``"layers":null``."""
    out: dict[str, Any] = {"schemaVersion": doc.get("schemaVersion", 0)}
    for key in ("mediaType", "artifactType"):
        if doc.get(key):
            out[key] = doc[key]
    out["config"] = go_descriptor_fields(doc.get("config"))
    layers = doc.get("layers")
    out["layers"] = [go_descriptor_fields(layer) for layer in layers] if isinstance(layers, list) else None
    if doc.get("subject"):
        out["subject"] = go_descriptor_fields(doc["subject"])
    if isinstance(doc.get("annotations"), dict) and doc["annotations"]:
        out["annotations"] = dict(sorted(doc["annotations"].items()))
    return go_json(out).encode("utf-8")


def oci_extra_info(store: Store, typed_image: str, manifest: ArchManifest) -> ExtraInfo:
    """The ``oci.*`` keys of ``image inspect``, computed as ig does (repository/tag as typed)."""
    if is_digest_only(typed_image):
        repository, tag = "", reference.DEFAULT_TAG  # ig's values for a reference without a name or tag
    else:
        typed = reference.parse(typed_image)
        repository, tag = typed.repository, typed.tag_or_latest
    info: ExtraInfo = {
        "oci.manifest": ("application/json", go_manifest_json(manifest.doc)),
        "oci.repository": ("text/plain", repository.encode()),
        "oci.tag": ("text/plain", tag.encode()),
        "oci.created": ("text/plain", manifest.annotations.get(mt.ANNOTATION_CREATED, "").encode()),
    }
    config = manifest.config
    if config is not None:
        info["oci.digest"] = ("text/plain", str(config.digest).encode())
        if config.media_type == mt.GADGET_CONFIG:
            info["oci.metadata"] = ("text/yaml", store.blobs.read(config.digest, max_size=mt.MAX_MANIFEST_BYTES))
    return info
