"""The datasources ``ig image inspect --show-datasources`` derives from an eBPF object, offline.

IG's ebpf operator scans the BTF for ``const void *`` marker globals (``gadget_tracer_``,
``gadget_mapiter_``, ``gadget_iter_``), turns the named struct(s) into static fields (nested
structs/unions flattened with a parent link) and lets gadget.yaml's ``datasources`` section add
tags and annotations. Fields that other operators add at run time (enum/stack formatters, k8s and
runtime enrichment) cannot be known from the image and are not produced. Output dicts use the key
order and ``omitempty`` rules of Go's encoding/json for ``api.DataSource`` / ``api.Field``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gadgetstore.engine.analysis import btf as bk
from gadgetstore.engine.analysis.btf import Btf, BtfType
from gadgetstore.engine.analysis.collection import load_collection
from gadgetstore.engine.analysis.spec import CollectionSpec
from gadgetstore.engine.errors import AnalysisError

TYPE_SINGLE = 1
TYPE_ARRAY = 2

# api.Kind numbers.
KIND_INVALID, KIND_BOOL = 0, 1
KIND_INT8, KIND_INT16, KIND_INT32, KIND_INT64 = 2, 3, 4, 5
KIND_UINT8, KIND_UINT16, KIND_UINT32, KIND_UINT64 = 6, 7, 8, 9
KIND_FLOAT32, KIND_FLOAT64 = 10, 11
KIND_CSTRING, KIND_BYTES = 13, 14
KIND_ARRAY_FLAG = 0x10000000

# Field flag bits (pkg/datasource/field.go).
FLAG_HIDDEN = 4
FLAG_HAS_PARENT = 8
FLAG_STATIC_MEMBER = 16

_MAP_HASH, _MAP_PERF_EVENT_ARRAY, _MAP_RINGBUF = 1, 4, 27
_SPLIT = "___"
_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4
_MAX_DEPTH = 64

# Every field starts with these (datasource defaultFieldAnnotations).
_DEFAULT_ANNOTATIONS = {"columns.width": "16", "columns.ellipsis": "end", "columns.alignment": "left"}

# metadatav1.AnnotationsTemplates: applied for ``template:`` annotations and for gadget_* typedefs.
_RIGHT = {"columns.alignment": "right"}
TEMPLATES: dict[str, dict[str, str]] = {
    "timestamp": {"columns.width": "35", "columns.maxwidth": "35", "columns.ellipsis": "end",
                  "columns.hidden": "true", "description": "Microseconds since Unix epoch"},
    "bytes": {"columns.width": "10", **_RIGHT},
    "duration": {"columns.width": "20", **_RIGHT},
    "node": {"columns.width": "30", "columns.ellipsis": "middle"},
    "pod": {"columns.width": "30", "columns.ellipsis": "middle"},
    "container": {"columns.width": "30"},
    "namespace": {"columns.width": "30"},
    "containerImageName": {"columns.width": "30"},
    "containerPid": {"columns.width": "6", "columns.hidden": "true", **_RIGHT},
    "containerImageDigest": {"columns.width": "30"},
    "containerStartedAt": {"columns.hidden": "true", "columns.width": "35"},
    "comm": {"description": "Process name", "columns.maxwidth": "16"},
    "pcomm": {"description": "Parent process name", "columns.maxwidth": "16", "columns.hidden": "true"},
    "pid": {"description": "Process ID", "columns.minwidth": "7", **_RIGHT},
    "ppid": {"description": "Parent process ID", "columns.minwidth": "7", **_RIGHT, "columns.hidden": "true"},
    "tid": {"description": "Thread ID", "columns.minwidth": "7", **_RIGHT},
    "ptid": {"description": "Parent thread ID", "columns.minwidth": "7", **_RIGHT, "columns.hidden": "true"},
    "uid": {"description": "User ID", "columns.minwidth": "8", **_RIGHT},
    "gid": {"description": "Group ID", "columns.minwidth": "8", **_RIGHT},
    "ns": {"columns.hidden": "true", "columns.width": "12", **_RIGHT},
    "mntns_id": {"description": "Mount namespace ID", "columns.hidden": "true", "columns.width": "12", **_RIGHT},
    "netns_id": {"description": "Network namespace ID", "columns.hidden": "true", "columns.width": "12", **_RIGHT},
    "l4endpoint": {"columns.minwidth": "22", "columns.width": "40", "columns.maxwidth": "52",
                   "columns.ellipsis": "middle"},
    "syscall": {"description": "Syscall", "columns.width": "18", "columns.maxwidth": "28"},
    "errorString": {"columns.width": "12"},
    "user_stack": {"description": "User stack trace", "columns.hidden": "true"},
}
# gadget_* typedefs whose name selects a template (the ``gadget_`` prefix removed) ...
_TEMPLATED_TYPES = frozenset({"gadget_comm", "gadget_uid", "gadget_gid", "gadget_pid", "gadget_tid",
                              "gadget_timestamp", "gadget_mntns_id", "gadget_netns_id", "gadget_pcomm",
                              "gadget_ppid", "gadget_user_stack"})
# ... and the process structs that are hidden, their members shown under their own name as alias.
_PROCESS_TYPES = frozenset({"gadget_process", "gadget_creds", "gadget_parent"})


@dataclass(slots=True)
class _Field:
    """One static field before gadget.yaml is applied; ``parent`` is -1 or an index in the struct."""

    name: str
    offs: int
    size: int
    kind: int
    tags: list[str]
    annotations: dict[str, str]
    parent: int


@dataclass(slots=True)
class _Source:
    name: str
    type: int
    payloads: list[tuple[list[_Field], list[str]]]  # per payload: fields, extra tags for every field
    annotations: dict[str, str] = field(default_factory=dict)


def datasources_from_elf(elf: bytes, metadata: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """IG's ebpf-operator datasources of one ELF layer, gadget.yaml merged in, sorted by name."""
    collection = load_collection(elf)
    config = _mapping(_mapping(_insensitive(metadata)).get("datasources"))
    sources = _discover(collection)
    out = [_render(source, _mapping(config.get(source.name.lower()))) for source in sources.values()]
    return sorted(out, key=lambda source: source["name"].encode("utf-8", "surrogateescape"))


def _discover(collection: CollectionSpec) -> dict[str, _Source]:
    """Walk the BTF in type-id order like IG's ``analyze`` and collect the marker variables."""
    btf = collection.btf
    found: dict[str, tuple[int, _Source]] = {}
    for btf_type in btf.types:
        if not _is_marker(btf, btf_type):
            continue
        name = btf_type.name
        if name.startswith("gadget_tracer_"):
            rank, source = 0, _tracer(collection, name.removeprefix("gadget_tracer_"))
        elif name.startswith(("gadget_iter_", "gadget_snapshotter_")):  # the latter is IG's deprecated spelling
            rank, source = 1, _iterator(collection, name.split("_", 2)[2])
        elif name.startswith("gadget_mapiter_"):
            rank, source = 2, _mapiter(collection, name.removeprefix("gadget_mapiter_"))
        else:
            continue
        previous = found.get(source.name)
        if previous is not None and previous[0] == rank == 2:
            raise AnalysisError(f"BTF: duplicate map iterator {source.name!r} at byte offset {btf_type.record_offset}")
        # IG keeps the last tracer and the first iterator of a name; registering tracers, then
        # iterators, then map iterators, a later kind replaces an earlier one of the same name.
        if previous is None or rank > previous[0] or (rank == previous[0] == 0):
            found[source.name] = (rank, source)
    return {name: source for name, (_, source) in found.items()}


def _is_marker(btf: Btf, btf_type: BtfType) -> bool:
    """A global ``const void *`` VAR, the only shape IG's validator accepts."""
    if btf_type.kind != bk.KIND_VAR or btf_type.linkage != 1:
        return False
    pointer = btf.get(btf_type.ref)
    if pointer.kind != bk.KIND_PTR:
        return False
    const = btf.get(pointer.ref)
    return const.kind == bk.KIND_CONST and const.ref == 0


def _tracer(collection: CollectionSpec, spec: str) -> _Source:
    parts = spec.split(_SPLIT)
    if len(parts) != 3:
        raise AnalysisError(f"BTF: invalid tracer info {spec!r} at byte offset 0")
    name, map_name, struct_name = parts
    tracer_map = collection.maps.get(map_name)
    if tracer_map is None:
        raise AnalysisError(f"BTF: tracer {name!r}: map {map_name!r} not found in the eBPF object at byte offset 0")
    if tracer_map.type not in (_MAP_RINGBUF, _MAP_PERF_EVENT_ARRAY):
        raise AnalysisError(f"BTF: tracer {name!r}: map {map_name!r} is neither a ring buffer nor a perf event "
                            f"array at byte offset 0")
    struct = _struct_by_name(collection.btf, struct_name)
    return _Source(name, TYPE_SINGLE, [(_struct_fields(collection.btf, struct), [])])


def _iterator(collection: CollectionSpec, spec: str) -> _Source:
    parts = spec.split(_SPLIT)
    if len(parts) < 3:
        raise AnalysisError(f"BTF: invalid iterator definition {spec!r} at byte offset 0")
    name, struct_name, programs = parts[0], parts[1], parts[2:]
    for program in programs:
        found = collection.programs.get(program)
        if found is None or not found.section.startswith("iter/"):
            raise AnalysisError(f"BTF: iterator {name!r}: program {program!r} is not an iter/ program "
                                f"of the eBPF object at byte offset 0")
    struct = _struct_by_name(collection.btf, struct_name)
    return _Source(name, TYPE_ARRAY, [(_struct_fields(collection.btf, struct), [])],
                   {"fetch-interval": "0", "fetch-count": "1"})


def _mapiter(collection: CollectionSpec, spec: str) -> _Source:
    parts = spec.split(_SPLIT)
    if len(parts) != 2:
        raise AnalysisError(f"BTF: invalid name for gadget_mapiter type {spec!r} at byte offset 0")
    name, map_name = parts
    iter_map = collection.maps.get(map_name)
    if iter_map is None or iter_map.type != _MAP_HASH:
        raise AnalysisError(f"BTF: map iterator {name!r}: {map_name!r} is not a hash map of the eBPF object "
                            f"at byte offset 0")
    btf = collection.btf
    key, value = _map_key_value(btf, map_name)
    return _Source(name, TYPE_ARRAY, [(_struct_fields(btf, key), ["role:key"]), (_struct_fields(btf, value), [])])


def _map_key_value(btf: Btf, map_name: str) -> tuple[BtfType, BtfType]:
    """The key and value structs of a BTF-defined map (cilium keeps them unresolved: no typedefs)."""
    datasec = btf.find_datasec(".maps")
    for info in datasec.secinfos if datasec else ():
        var = btf.get(info.type_id)
        if var.name != map_name:
            continue
        definition = btf.skip_qualifiers(var.ref)
        found: dict[str, BtfType] = {}
        for member in definition.members:
            if member.name in ("key", "value") and btf.get(member.type_id).kind == bk.KIND_PTR:
                found[member.name] = btf.get(btf.get(member.type_id).ref)
        key, value = found.get("key"), found.get("value")
        if key is None or key.kind != bk.KIND_STRUCT or value is None or value.kind != bk.KIND_STRUCT:
            raise AnalysisError(f"BTF: map {map_name!r}: key and value must be structs "
                                f"at byte offset {definition.record_offset}")
        return key, value
    raise AnalysisError(f"BTF: map {map_name!r} is not a BTF-defined map at byte offset 0")


def _struct_by_name(btf: Btf, name: str) -> BtfType:
    """cilium's ``TypeByName`` for a ``*btf.Struct``: exactly one struct of that name."""
    matches = [t for t in btf.types if t.kind == bk.KIND_STRUCT and t.name == name]
    if len(matches) != 1:
        problem = "not found" if not matches else "defined more than once"
        raise AnalysisError(f"BTF: struct {name!r} {problem} at byte offset {btf.strings_base}")
    return matches[0]


def _struct_fields(btf: Btf, struct: BtfType) -> list[_Field]:
    fields: list[_Field] = []
    _add_members(btf, struct, fields, 0, -1, 0)
    for entry in fields:
        if entry.offs + entry.size > struct.size:
            raise AnalysisError(f"BTF: field {entry.name!r} exceeds struct {struct.name!r} "
                                f"at byte offset {struct.record_offset}")
    return fields


def _add_members(btf: Btf, container: BtfType, fields: list[_Field], base: int, parent: int, depth: int) -> None:
    """Flatten members like IG: nested structs/unions become a Bytes field plus their children."""
    if depth > _MAX_DEPTH:
        raise AnalysisError(f"BTF: struct nesting too deep at byte offset {container.record_offset}")
    for member in container.members:
        if member.name.startswith("__"):
            continue
        member_type = btf.get(member.type_id)
        names, resolved = _type_names(btf, member_type)
        annotations = dict(_DEFAULT_ANNOTATIONS)
        for type_name in names:
            if type_name in _TEMPLATED_TYPES:
                annotations.update(TEMPLATES[type_name.removeprefix("gadget_")])
            elif type_name in _PROCESS_TYPES:
                annotations["columns.hidden"] = "true"
        if container.name in _PROCESS_TYPES:
            annotations["columns.alias"] = member.name
        tags = [f"type:{type_name}" for type_name in names] + [f"name:{member.name}", "src:ebpf"]
        offs = base + member.bit_offset // 8
        if member_type.kind in (bk.KIND_STRUCT, bk.KIND_UNION):
            fields.append(_Field(member.name, offs, member_type.size, KIND_BYTES, tags, annotations, parent))
            _add_members(btf, member_type, fields, offs, len(fields) - 1, depth + 1)
            continue
        if resolved is None:
            continue
        kind, size = resolved
        if size:
            fields.append(_Field(member.name, offs, size, kind, tags, annotations, parent))


def _type_names(btf: Btf, btf_type: BtfType) -> tuple[list[str], tuple[int, int] | None]:
    """IG's ``btfhelpers.GetType``: names met through typedefs/arrays, and (kind, size) if representable."""
    names: list[str] = []
    current = btf_type
    array_dims: list[int] = []
    for _ in range(_MAX_DEPTH):
        if current.name and current.kind not in (bk.KIND_CONST, bk.KIND_VOLATILE):
            names.append(current.name)
        if current.kind in (bk.KIND_TYPEDEF, bk.KIND_CONST, bk.KIND_VOLATILE):
            current = btf.get(current.ref)
        elif current.kind == bk.KIND_ARRAY:
            array_dims.append(current.array_nelems)
            current = btf.get(current.array_elem)
        else:
            break
    else:
        raise AnalysisError(f"BTF: type chain too deep at byte offset {btf_type.record_offset}")
    simple = _simple_kind(current)
    if simple is None:
        return names, None
    kind, size = simple
    for count in array_dims:
        size *= count
    return names, (_array_kind(kind, len(array_dims), "char" in names), size)


def _array_kind(scalar: int, dims: int, is_char: bool) -> int:
    """IG's ``getFieldKind``: ``char[N]`` is a CString, arrays of arrays (but not of strings) are Invalid."""
    if dims == 0:
        return scalar
    if dims == 1 and scalar == KIND_INT8 and is_char:
        return KIND_CSTRING
    inner = _array_kind(scalar, dims - 1, is_char)
    return KIND_INVALID if inner & KIND_ARRAY_FLAG else inner | KIND_ARRAY_FLAG


def _simple_kind(btf_type: BtfType) -> tuple[int, int] | None:
    """The Go scalar IG maps an INT/ENUM/FLOAT to; None for anything else (pointers, odd sizes)."""
    size = btf_type.size
    widths = {1: 0, 2: 1, 4: 2, 8: 3}
    if btf_type.kind == bk.KIND_INT and btf_type.int_encoding in (_INT_BOOL, _INT_CHAR):
        return (KIND_BOOL if btf_type.int_encoding == _INT_BOOL else KIND_UINT8), 1  # Go's bool / uint8
    if size not in widths:
        return None
    signed_kinds = (KIND_INT8, KIND_INT16, KIND_INT32, KIND_INT64)
    unsigned_kinds = (KIND_UINT8, KIND_UINT16, KIND_UINT32, KIND_UINT64)
    if btf_type.kind == bk.KIND_INT:
        encoding = btf_type.int_encoding
        if encoding == _INT_SIGNED:
            return signed_kinds[widths[size]], size
        if encoding == 0:
            return unsigned_kinds[widths[size]], size
        return None
    if btf_type.kind in (bk.KIND_ENUM, bk.KIND_ENUM64):
        return (signed_kinds if btf_type.kind_flag else unsigned_kinds)[widths[size]], size
    if btf_type.kind == bk.KIND_FLOAT and size in (4, 8):
        return (KIND_FLOAT32 if size == 4 else KIND_FLOAT64), size
    return None


def _mapping(value: object) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _insensitive(value: object) -> object:
    """viper lower-cases every key of the config it reads; lookups and annotation keys follow suit."""
    if isinstance(value, Mapping):
        return {str(k).lower(): _insensitive(v) for k, v in value.items()}
    return value


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value] if isinstance(value, list) else []


def _field_config(fields_config: dict[str, Any], full_name: str) -> dict[str, Any]:
    """viper's ``Sub(fullName)``: a literal dotted key, else the nested path."""
    full_name = full_name.lower()
    if full_name in fields_config:
        return _mapping(fields_config[full_name])
    node: object = fields_config
    for part in full_name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return {}
        node = node[part]
    return _mapping(node)


def _render(source: _Source, config: dict[str, Any]) -> dict[str, Any]:
    """Build the ``api.DataSource`` JSON object (omitempty, Go field order)."""
    fields_config = _mapping(config.get("fields"))
    rendered: list[dict[str, Any]] = []
    full_names: set[str] = set()
    for payload_index, (payload, extra_tags) in enumerate(source.payloads):
        first = len(rendered)
        names: list[str] = []
        for entry in payload:
            parent_full = names[entry.parent] + "." if entry.parent >= 0 else ""
            names.append(parent_full + entry.name)
        for entry, full_name in zip(payload, names, strict=True):
            if full_name in full_names:
                raise AnalysisError(f"BTF: datasource {source.name!r}: field {full_name!r} already exists "
                                    f"at byte offset 0")
            full_names.add(full_name)
            tags = entry.tags + [tag for tag in extra_tags if tag not in entry.tags]
            annotations = dict(entry.annotations)
            if annotations.get("template") in TEMPLATES:
                annotations.update(TEMPLATES[annotations["template"]])
            field_config = _field_config(fields_config, full_name)
            tags += _strings(field_config.get("tags"))
            configured = {str(k): _go_string(v) for k, v in _mapping(field_config.get("annotations")).items()}
            if configured.get("template") in TEMPLATES:
                annotations.update(TEMPLATES[configured["template"]])
            annotations.update(configured)
            flags = FLAG_STATIC_MEMBER
            if entry.parent >= 0:
                flags |= FLAG_HAS_PARENT
            if annotations.get("columns.hidden") == "true":
                flags |= FLAG_HIDDEN
            out: dict[str, Any] = {"name": entry.name, "fullName": full_name, "index": len(rendered),
                                   "payloadIndex": payload_index, "offs": entry.offs, "size": entry.size,
                                   "flags": flags, "kind": entry.kind, "tags": tags,
                                   "annotations": dict(sorted(annotations.items())),
                                   "parent": first + entry.parent if entry.parent >= 0 else 0}
            rendered.append({key: value for key, value in out.items() if value})
    annotations = dict(source.annotations)
    annotations.update({str(k): _go_string(v) for k, v in _mapping(config.get("annotations")).items()})
    result: dict[str, Any] = {"name": source.name, "type": source.type, "fields": rendered,
                              "tags": _strings(config.get("tags")), "annotations": dict(sorted(annotations.items()))}
    return {key: value for key, value in result.items() if value}


def _go_string(value: object) -> str:
    """viper's ``GetStringMapString`` rendering of YAML scalars (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
