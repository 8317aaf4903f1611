"""Pure half of ``image build``: build.yaml, annotations and the exact bytes of manifests and index.

Nothing here touches the file system or runs a program, so every byte ig would write can be
checked in tests from in-memory inputs. The rules mirror ``ig image build`` (see
shared/reference/ig-image-formats.md §1 and §5).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import yaml

from . import mediatypes as mt
from .descriptor import Descriptor, canonical_json
from .digest import Digest
from .errors import GadgetStoreError

ARCHS = ("amd64", "arm64")
"""ig always builds these two, sorted, so amd64 comes first and gives the index its annotations."""

TARGET_ARCH_MACRO = {"amd64": "x86", "arm64": "arm64"}
"""Suffix of the ``__TARGET_ARCH_*`` define that libbpf's bpf_tracing.h expects."""

HOST_KERNEL_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
"""Host machine name -> multiarch include directory prefix (ig uses the host's, not the target's)."""

DEFAULT_EBPF_SOURCE = "program.bpf.c"
DEFAULT_METADATA = "gadget.yaml"

EMPTY_CONFIG = b"{}"
"""The OCI empty descriptor's content; its ``data`` field is this, base64-encoded."""

ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_DESCRIPTION = "org.opencontainers.image.description"
ANNOTATION_URL = "org.opencontainers.image.url"
ANNOTATION_DOCUMENTATION = "org.opencontainers.image.documentation"
ANNOTATION_SOURCE = "org.opencontainers.image.source"
ANNOTATION_BUILDER_VERSION = "io.inspektor-gadget.builder.version"
ANNOTATION_EBPF_COMPILER = "io.gadgetstore.builder.ebpf-compiler"
"""The clang that compiled the eBPF objects (its ``--version`` line). ig's builder.version is kept
for what ig uses it for (the version of the tool that built the image, compared with the running
ig's), so the compilers get keys of their own, under this project's prefix, set when ig sets
builder.version (images with a gadget.yaml) and overridable from gadget.yaml's annotations alike."""
ANNOTATION_WASM_COMPILER = "io.gadgetstore.builder.wasm-compiler"
"""The Go (``go1.26.8``) or cargo (``cargo 1.95.0 (…)``) that built the wasm module from sources."""

_METADATA_ANNOTATION_KEYS = (
    ("name", ANNOTATION_TITLE),
    ("description", ANNOTATION_DESCRIPTION),
    ("homepageURL", ANNOTATION_URL),
    ("documentationURL", ANNOTATION_DOCUMENTATION),
    ("sourceURL", ANNOTATION_SOURCE),
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NULL_TAG = "tag:yaml.org,2002:null"


class BuildError(GadgetStoreError):
    """A gadget that cannot be built: bad build.yaml or gadget.yaml, missing tools, compile errors."""


# -- YAML as Go's decoders see it ---------------------------------------------------------------


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "sequence"
    return "mapping" if isinstance(node, yaml.MappingNode) else "scalar"


def _scalar_text(node: yaml.Node, where: str) -> str:
    """A scalar decoded into a Go string keeps its source text (``yes`` stays ``yes``); null is ``""``."""
    if not isinstance(node, yaml.ScalarNode):
        raise BuildError(f"{where}: expected a string, got a YAML {_kind(node)}")
    if node.tag == _NULL_TAG:
        return ""
    return str(node.value)


def _compose(data: bytes, where: str) -> yaml.Node | None:
    """Only the first document counts, as with Go's yaml decoders."""
    try:
        return next(iter(yaml.compose_all(data, Loader=yaml.SafeLoader)), None)
    except yaml.YAMLError as err:
        raise BuildError(f"{where}: invalid YAML: {err}".replace("\n", " ")) from None


def _mapping_items(node: yaml.Node, where: str) -> list[tuple[str, yaml.Node]]:
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
        return []
    if not isinstance(node, yaml.MappingNode):
        raise BuildError(f"{where}: expected a mapping, got a YAML {_kind(node)}")
    return [(_scalar_text(key, where), value) for key, value in node.value]


_BUILD_FILE_KEYS = ("ebpfsource", "wasm", "metadata")


@dataclass(frozen=True)
class BuildFile:
    """build.yaml; keys ig no longer knows (like ``cflags``) are ignored, as ig does, and listed in ``ignored``."""

    ebpfsource: str = DEFAULT_EBPF_SOURCE
    wasm: str = ""
    metadata: str = DEFAULT_METADATA
    ignored: tuple[str, ...] = ()


def parse_build_file(data: bytes, where: str = "build.yaml") -> BuildFile:
    node = _compose(data, where)
    if node is None:
        return BuildFile()
    items = _mapping_items(node, where)
    values = {key: _scalar_text(value, f"{where}: {key}") for key, value in items if key in _BUILD_FILE_KEYS}
    ignored = tuple(key for key, _ in items if key not in _BUILD_FILE_KEYS)
    return BuildFile(**values, ignored=ignored)


def metadata_annotations(
    metadata: bytes, builder_version: str, where: str = "gadget.yaml", tools: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The annotations ig derives from gadget.yaml; its own ``annotations:`` map may override them.

    ``tools`` (compiler annotations) go beside ig's builder version, with the same precedence."""
    node = _compose(metadata, where)
    if node is None:
        raise BuildError(f"{where}: decoding metadata file: the file has no YAML document")
    fields = dict(_mapping_items(node, where))
    out = {ann: _scalar_text(fields[key], f"{where}: {key}") if key in fields else ""
           for key, ann in _METADATA_ANNOTATION_KEYS}
    out[ANNOTATION_BUILDER_VERSION] = builder_version
    out.update(tools or {})
    if "annotations" in fields:
        for key, value in _mapping_items(fields["annotations"], f"{where}: annotations"):
            out[key] = _scalar_text(value, f"{where}: annotations: {key}")
    return out


# -- the created timestamp ----------------------------------------------------------------------


def format_rfc3339(moment: datetime) -> str:
    """Go's ``time.RFC3339``: whole seconds, ``Z`` for a zero offset, else ``±hh:mm``."""
    offset = moment.utcoffset()
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if offset is None or not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{mins:02d}"


def created_timestamp(source_date_epoch: str | None, now: datetime | None = None) -> str:
    """``SOURCE_DATE_EPOCH`` (seconds, UTC) for reproducible builds, else local time with its offset."""
    if source_date_epoch is None:
        return format_rfc3339(now if now is not None else datetime.now().astimezone())
    if not re.fullmatch(r"[+-]?[0-9]+", source_date_epoch):
        raise BuildError(f"invalid SOURCE_DATE_EPOCH {source_date_epoch!r}: expected whole seconds")
    seconds = int(source_date_epoch)
    if not _INT64_MIN <= seconds <= _INT64_MAX:
        raise BuildError(f"invalid SOURCE_DATE_EPOCH {source_date_epoch!r}: value out of range")
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise BuildError(f"invalid SOURCE_DATE_EPOCH {source_date_epoch!r}: not a date this tool can write")
    return format_rfc3339(moment)


# -- manifests and index ------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchLayers:
    """The layer contents of one architecture's manifest, in ig's layer order."""

    ebpf: bytes | None = None
    wasm: bytes | None = None

    def layers(self) -> list[tuple[str, bytes]]:
        out = []
        if self.ebpf is not None:
            out.append((mt.GADGET_EBPF, self.ebpf))
        if self.wasm is not None:
            out.append((mt.GADGET_WASM, self.wasm))
        return out


@dataclass
class ImagePlan:
    """Every blob of one built image, children before parents, and the descriptor to tag."""

    blobs: dict[Digest, bytes] = field(default_factory=dict)
    manifests: list[Descriptor] = field(default_factory=list)
    index: Descriptor | None = None

    def add(self, data: bytes) -> Digest:
        digest = Digest.of_bytes(data)
        self.blobs.setdefault(digest, data)
        return digest

    @property
    def root(self) -> Descriptor:
        assert self.index is not None, "plan_image() sets the index"
        return self.index


def _sorted(annotations: dict[str, str]) -> dict[str, str]:
    """Go marshals maps with sorted keys (UTF-8 byte order equals code point order)."""
    return {key: annotations[key] for key in sorted(annotations)}


def _descriptor(media_type: str, digest: Digest, size: int) -> dict[str, object]:
    return {"mediaType": media_type, "digest": str(digest), "size": size}


def _config(plan: ImagePlan, metadata: bytes | None, annotations: dict[str, str]) -> dict[str, object]:
    if metadata is None:
        desc = _descriptor(mt.OCI_EMPTY, plan.add(EMPTY_CONFIG), len(EMPTY_CONFIG))
        desc["annotations"] = annotations
        desc["data"] = base64.b64encode(EMPTY_CONFIG).decode()
        return desc
    desc = _descriptor(mt.GADGET_CONFIG, plan.add(metadata), len(metadata))
    desc["annotations"] = annotations
    return desc


def image_annotations(
    metadata: bytes | None, created: str, builder_version: str, tools: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Shared by config, manifests, index entries and index; no builder version without gadget.yaml."""
    annotations = {} if metadata is None else metadata_annotations(metadata, builder_version, tools=tools)
    annotations[mt.ANNOTATION_CREATED] = created
    return _sorted(annotations)


def plan_image(
    layers: dict[str, ArchLayers],
    metadata: bytes | None,
    created: str,
    builder_version: str,
    tools: Mapping[str, str] | None = None,
) -> ImagePlan:
    """The OCI index with one manifest per arch, byte for byte as ig writes it (plus ``tools``' annotations)."""
    if not layers:
        raise BuildError("gadget contains no layers")
    annotations = image_annotations(metadata, created, builder_version, tools)
    plan = ImagePlan()
    entries: list[dict[str, object]] = []
    for arch in sorted(layers):
        config = _config(plan, metadata, annotations)
        layer_descs = [_descriptor(media, plan.add(data), len(data)) for media, data in layers[arch].layers()]
        manifest = {
            "schemaVersion": 2,
            "artifactType": mt.GADGET_ARTIFACT,
            "config": config,
            "layers": layer_descs,
            "annotations": annotations,
        }
        body = canonical_json(manifest)
        entry = _descriptor(mt.OCI_MANIFEST, plan.add(body), len(body))
        entry["annotations"] = annotations
        entry["platform"] = {"architecture": arch, "os": "linux"}
        entries.append(entry)
        plan.manifests.append(Descriptor.from_json(entry, f"{arch} manifest"))
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries, "annotations": annotations}
    body = canonical_json(index)
    root = _descriptor(mt.OCI_INDEX, plan.add(body), len(body))
    root["annotations"] = annotations
    plan.index = Descriptor.from_json(root, "index")
    return plan
