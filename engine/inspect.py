"""All extra-info keys of an architecture manifest, as ``image inspect`` and the FUSE view use them.

Analysing a layer costs tens of milliseconds; its result depends only on the layer's bytes, so it is
cached in the store under ``analysis/<version>/<alg>/<hex>.json`` keyed by the layer digest. Layers are
immutable, so a cache entry never goes stale; gc removes entries whose layer is gone.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

from . import mediatypes as mt
from .analysis.extrainfo import analyze_ebpf, analyze_wasm
from .descriptor import Descriptor
from .digest import Digest
from .fsutil import atomic_write, ensure_real_dir
from .images import ArchManifest, ExtraInfo, oci_extra_info
from .store import Store

ANALYSIS_VERSION = "v2"
MAX_LAYER_BYTES = 64 * 1024 * 1024
_ANALYZERS: dict[str, Callable[[bytes], ExtraInfo]] = {mt.GADGET_EBPF: analyze_ebpf, mt.GADGET_WASM: analyze_wasm}


def cache_dir(store: Store) -> Path:
    return store.analysis_dir / ANALYSIS_VERSION


def cache_path(store: Store, digest: Digest) -> Path:
    return cache_dir(store) / digest.algorithm / f"{digest.hex}.json"


def _load_cached(path: Path) -> ExtraInfo | None:
    try:
        raw = json.loads(path.read_bytes())
        return {key: (ctype, base64.b64decode(content)) for key, (ctype, content) in raw.items()}
    except (OSError, ValueError, TypeError):
        return None


def _save_cached(path: Path, info: ExtraInfo) -> None:
    """Best effort: a read-only store still answers, it just analyses again next time."""
    raw = {key: [ctype, base64.b64encode(content).decode()] for key, (ctype, content) in info.items()}
    try:
        ensure_real_dir(path.parent.parent.parent)
        ensure_real_dir(path.parent.parent)
        ensure_real_dir(path.parent)
        atomic_write(path, json.dumps(raw, sort_keys=True).encode(), 0o644)
    except OSError:
        pass


def layer_extra_info(store: Store, layer: Descriptor) -> ExtraInfo:
    """The analysis of one eBPF or wasm layer, from the cache when it is there."""
    analyze = _ANALYZERS.get(layer.media_type)
    if analyze is None:
        return {}
    path = cache_path(store, layer.digest)
    cached = _load_cached(path)
    if cached is not None:
        return cached
    info = analyze(store.blobs.read(layer.digest, max_size=MAX_LAYER_BYTES))
    _save_cached(path, info)
    return info


def image_extra_info(store: Store, typed_image: str, manifest: ArchManifest) -> ExtraInfo:
    """``oci.*`` keys plus the analysis of the manifest's eBPF and wasm layers."""
    info = oci_extra_info(store, typed_image, manifest)
    for media_type in _ANALYZERS:
        layer = manifest.layer(media_type)
        if layer is not None:
            info.update(layer_extra_info(store, layer))
    return info
