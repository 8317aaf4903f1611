"""All extra-info keys of an architecture manifest, and its data sources, as ``image inspect`` shows them.

Analysing a layer means decoding and listing every program in it, slow for a big one; its result
depends only on the layer's bytes, so it is cached keyed by the layer digest, under
``analysis/<version>/<alg>/<hex>.extra``: a short JSON header (key, content type and lengths of
each entry), then each entry's content as raw bytes followed by the JSON string ig prints for it
among all keys. ``--extra-info KEY`` of a JSON entry prints the document re-marshalled as Go does;
that text is cached on first use beside it (``<hex>.extra.<key>.json`` / ``.jsonpretty``). The
data sources of ``--show-datasources`` depend on gadget.yaml and the layers together, so they are
cached by the architecture manifest's digest (``<hex>.datasources.json``). A warm ``inspect`` thus
neither decodes nor encodes megabytes of program listings, and loads no ELF or BTF code: the
analysers are imported on a cache miss only.

Where the cache lives, how an entry is written and checked (a trailer after the bytes above), and
when gc drops one is :mod:`.analysiscache`'s.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import analysiscache
from . import mediatypes as mt
from .descriptor import Descriptor
from .digest import Digest
from .errors import AnalysisError
from .gojson import go_json, go_json_string, go_unmarshal, plain_loads
from .images import ArchManifest, ExtraInfo, oci_extra_info
from .store import Store

MAX_LAYER_BYTES = 64 * 1024 * 1024
JSON_CONTENT = "application/json"
_MAGIC = b"gadgetstore-extra-info 1\n"
_EXTRA_SUFFIX = ".extra"
_DATASOURCES_SUFFIX = ".datasources.json"
Buffer = bytes | mmap.mmap
Span = tuple[int, int]


def _analyze_ebpf(elf: bytes) -> ExtraInfo:
    from .analysis.extrainfo import analyze_ebpf

    return analyze_ebpf(elf)


def _analyze_wasm(wasm: bytes) -> ExtraInfo:
    from .analysis.extrainfo import analyze_wasm

    return analyze_wasm(wasm)


ANALYZERS: dict[str, Callable[[bytes], ExtraInfo]] = {mt.GADGET_EBPF: _analyze_ebpf, mt.GADGET_WASM: _analyze_wasm}
"""The analyser of each layer media type: extra-info keys from the layer's bytes (what a cache entry
holds; replacing one is how a test sees whether the cache answered)."""


def cache_path(store: Store, digest: Digest, suffix: str = _EXTRA_SUFFIX) -> Path:
    """The cache entry of the analysis of ``digest`` (a layer's extra info, by default)."""
    return analysiscache.entry_path(store.analysis_dir, digest, suffix)


class Entry:
    """One extra-info entry: its content type, its content, and how ``image inspect`` prints it.

    Content and literal are spans of one buffer (a cache file mapped into memory, or bytes just
    computed), copied out only when asked for: listing every key copies no content.
    """

    __slots__ = ("_buffer", "_content", "_literal", "_renderings", "content_type")

    def __init__(self, content_type: str, buffer: Buffer, content: Span, literal: Span,
                 renderings: Path | None = None) -> None:
        self.content_type = content_type
        self._buffer = buffer
        self._content = content
        self._literal = literal
        self._renderings = renderings

    @classmethod
    def compute(cls, content_type: str, content: bytes, renderings: Path | None = None) -> Entry:
        literal = go_json_string(content.decode("utf-8", errors="replace")).encode()
        return cls(content_type, content + literal, (0, len(content)), (len(content), len(content) + len(literal)),
                   renderings)

    def content(self) -> bytes:
        return bytes(self._buffer[self._content[0]:self._content[1]])

    def literal(self) -> str:
        """The content as the JSON string ig prints for it (``json.Marshal`` of ``string(content)``)."""
        return str(self._buffer[self._literal[0]:self._literal[1]], "utf-8")

    def rendering(self, pretty: bool) -> str | None:
        """``--extra-info KEY`` of a JSON document: what ig prints after unmarshalling it into Go
        values (maps, so keys sorted). None for other content, JSON that does not parse, or a lone
        string (printed as text); those take the general path."""
        if self.content_type != JSON_CONTENT:
            return None
        path = self._renderings.with_name(f"{self._renderings.name}.{'jsonpretty' if pretty else 'json'}") \
            if self._renderings is not None else None
        if path is not None:
            cached = analysiscache.read_text_entry(path)
            if cached is not None:
                return cached
        try:
            value = go_unmarshal(self.content().decode("utf-8", errors="replace"))
        except ValueError:
            return None
        if isinstance(value, str):
            return None
        text = go_json(value, pretty)
        if path is not None:
            analysiscache.save_entry(path, text.encode())
        return text


def encode_extra_info(entries: dict[str, Entry]) -> bytes:
    """The cache file: magic line, a JSON header line ``[[key, content type, content length, literal
    length], ...]``, then each entry's content and literal in turn."""
    header: list[list[object]] = []
    body: list[bytes] = []
    for key, entry in entries.items():
        content, literal = entry.content(), entry.literal().encode()
        header.append([key, entry.content_type, len(content), len(literal)])
        body += (content, literal)
    return b"".join([_MAGIC, json.dumps(header).encode(), b"\n", *body])


def decode_extra_info(data: Buffer, length: int, renderings: Path | None = None) -> dict[str, Entry] | None:
    """The entries of a cache file's content (its first ``length`` bytes), or None for anything
    that is not one we wrote."""
    if bytes(data[:len(_MAGIC)]) != _MAGIC:
        return None
    end = data.find(b"\n", len(_MAGIC), length)
    try:
        header = plain_loads(bytes(data[len(_MAGIC):end])) if end >= 0 else None
    except ValueError:
        return None
    if not isinstance(header, list):
        return None
    entries: dict[str, Entry] = {}
    position = end + 1
    for row in header:
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[0], str) and isinstance(row[1], str)
                and all(type(n) is int and n >= 0 for n in row[2:])):
            return None
        key, content_type, content_length, literal_length = row
        content = (position, position + content_length)
        literal = (content[1], content[1] + literal_length)
        position = literal[1]
        entries[key] = Entry(content_type, data, content, literal,
                             renderings.with_name(f"{renderings.name}.{key}") if renderings is not None else None)
    return entries if position == length else None


def layer_entries(store: Store, layer: Descriptor) -> dict[str, Entry]:
    """The analysis of one eBPF or wasm layer, from the cache when it is there."""
    analyze = ANALYZERS.get(layer.media_type)
    if analyze is None:
        return {}
    path = cache_path(store, layer.digest)
    mapped = analysiscache.map_entry(path)
    cached = decode_extra_info(*mapped, path) if mapped is not None else None
    if cached is not None:
        return cached
    info = analyze(store.blobs.read(layer.digest, max_size=MAX_LAYER_BYTES))
    entries = {key: Entry.compute(content_type, content, path.with_name(f"{path.name}.{key}"))
               for key, (content_type, content) in info.items()}
    analysiscache.save_entry(path, encode_extra_info(entries))
    return entries


def image_entries(store: Store, typed_image: str, manifest: ArchManifest) -> dict[str, Entry]:
    """Every extra-info entry of the manifest: ``oci.*`` computed, the layers' analysis from the cache."""
    entries = {key: Entry.compute(content_type, content)
               for key, (content_type, content) in oci_extra_info(store, typed_image, manifest).items()}
    for media_type in ANALYZERS:
        layer = manifest.layer(media_type)
        if layer is not None:
            entries.update(layer_entries(store, layer))
    return entries


def image_extra_info(store: Store, typed_image: str, manifest: ArchManifest) -> ExtraInfo:
    """``oci.*`` keys plus the analysis of the manifest's eBPF and wasm layers."""
    return {key: (entry.content_type, entry.content())
            for key, entry in image_entries(store, typed_image, manifest).items()}


def image_datasources(store: Store, manifest: ArchManifest) -> list[dict[str, Any]]:
    """``--show-datasources`` of one architecture manifest (``api.DataSource`` objects sorted by name)."""
    path = cache_path(store, manifest.desc.digest, _DATASOURCES_SUFFIX)
    raw = analysiscache.read_text_entry(path)
    if raw is not None:
        try:
            cached = plain_loads(raw)
        except ValueError:
            cached = None
        if isinstance(cached, list):
            return cached
    from .analysis.datasources import gadget_datasources

    def layer_bytes(media_type: str) -> bytes | None:
        layer = manifest.layer(media_type)
        return store.blobs.read(layer.digest, max_size=MAX_LAYER_BYTES) if layer is not None else None

    sources = gadget_datasources(_metadata(store, manifest), layer_bytes(mt.GADGET_EBPF), layer_bytes(mt.GADGET_WASM))
    analysiscache.save_entry(path, json.dumps(sources, separators=(",", ":")).encode())
    return sources


def _metadata(store: Store, manifest: ArchManifest) -> object:
    """gadget.yaml as the operators read it: its first document, as Go's YAML decoder reads it (ig
    refuses a gadget whose gadget.yaml does not parse)."""
    import yaml

    config = manifest.config
    if config is None or config.media_type != mt.GADGET_CONFIG:
        return None
    try:
        documents = yaml.load_all(store.blobs.read(config.digest, max_size=mt.MAX_MANIFEST_BYTES),
                                  Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return next(iter(documents), None)
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())
        raise AnalysisError(f"gadget.yaml {config.digest} is not valid YAML: {problem}") from None
