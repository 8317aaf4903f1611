"""All extra-info keys of an image's architecture manifest, as ``image inspect`` and the FUSE view use them."""

from __future__ import annotations

from .images import ArchManifest, ExtraInfo, oci_extra_info
from .store import Store


def image_extra_info(store: Store, typed_image: str, manifest: ArchManifest) -> ExtraInfo:
    """``oci.*`` keys plus the analysis of the eBPF and wasm layers (cached by layer digest)."""
    return oci_extra_info(store, typed_image, manifest)
