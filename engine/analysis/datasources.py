"""The data sources ``ig image inspect --show-datasources`` lists for a gadget, computed offline.

``ig image inspect`` instantiates every data operator without running the gadget
(``GadgetContext.PrepareGadgetInfo``): the oci handler's image operators first (the ebpf operator
turns BTF marker variables into data sources), then the other operators in priority order, each
adding the fields it would fill at run time. This module is the ebpf operator
(``pkg/operators/ebpf``: ``analyze``, ``register``, ``populateStructDirect``); the other operators'
rules are tables in :mod:`.operator_rules`. Only rules that depend on the image alone are applied:
nothing that needs a kernel, a container runtime, a cluster or ig's own configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gadgetstore.engine.analysis import btf as bk
from gadgetstore.engine.analysis import dsmodel as ds
from gadgetstore.engine.analysis.btf import Btf, BtfType
from gadgetstore.engine.analysis.dsmodel import GadgetContext, StaticField
from gadgetstore.engine.analysis.spec import CollectionSpec
from gadgetstore.engine.errors import AnalysisError

_MAP_HASH, _MAP_PERF_EVENT_ARRAY, _MAP_RINGBUF = 1, 4, 27
_SPLIT = "___"
_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4
_MAX_DEPTH = 64

# Tracer annotations (pkg/operators/ebpf/ebpf.go AnnotationRestName, AnnotationRestLen) and the
# fetch annotations the ebpf operator gives iterators and map iterators.
REST_NAME, REST_LEN = "ebpf.rest.name", "ebpf.rest.len"
FETCH_INTERVAL, FETCH_COUNT = "fetch-interval", "fetch-count"
# evaluateMapParams with no instance params (inspect passes none): ``map-fetch-interval`` defaults
# to 1000ms, printed as Go's Duration.String, and ``map-fetch-count`` to 0.
MAPITER_FETCH = {FETCH_COUNT: "0", FETCH_INTERVAL: "1s"}

# gadget_* typedefs whose name selects a template (the ``gadget_`` prefix removed) ...
# (struct.go applyAnnotationsTemplateForType)
_TEMPLATED_TYPES = frozenset({"gadget_comm", "gadget_uid", "gadget_gid", "gadget_pid", "gadget_tid",
                              "gadget_timestamp", "gadget_mntns_id", "gadget_netns_id", "gadget_pcomm",
                              "gadget_ppid", "gadget_user_stack"})
# ... and the process structs that are hidden, their members shown under their own name as alias.
_PROCESS_TYPES = frozenset({"gadget_process", "gadget_creds", "gadget_parent"})


@dataclass(slots=True)
class _Struct:
    size: int
    fields: list[StaticField]


@dataclass(slots=True)
class EbpfObject:
    """What ``analyze`` finds in an object: tracers, iterators, map iterators and enum members."""

    tracers: dict[str, _Struct] = field(default_factory=dict)
    iterators: dict[str, _Struct] = field(default_factory=dict)
    mapiters: dict[str, tuple[_Struct, _Struct]] = field(default_factory=dict)
    structs: dict[str, _Struct] = field(default_factory=dict)
    # Full names of members whose type is an enum, in the order structs were populated.
    enums: list[str] = field(default_factory=list)
    map_names: frozenset[str] = frozenset()


def gadget_datasources(metadata: object, elf: bytes | None, wasm: bytes | None = None) -> list[dict[str, Any]]:
    """``--show-datasources`` of a gadget: ``api.DataSource`` JSON objects sorted by name.

    ``metadata`` is gadget.yaml as parsed YAML; ``elf`` and ``wasm`` the image's layers, if any.
    ig's operators create data sources, gadget.yaml only configures them: a data source that only
    gadget.yaml names is listed when the wasm module may create it (see :func:`wasm_may_create`),
    without fields (the module adds them when it runs).
    """
    from gadgetstore.engine.analysis.operator_rules import run_data_operators

    context = GadgetContext(metadata)
    if elf is not None:
        from gadgetstore.engine.analysis.collection import load_collection

        register_ebpf(context, analyze_object(load_collection(elf)))
    if wasm is not None:
        for name in ds.mapping(ds.mapping(metadata).get("datasources")):
            if name not in context.sources and wasm_may_create(wasm, name):
                context.register(ds.TYPE_UNKNOWN, name)
    run_data_operators(context)
    return context.to_json()


def wasm_may_create(wasm: bytes, name: str) -> bool:
    """Whether a wasm module can create a data source of this name in ``gadgetInit``.

    It must import ig's ``newDataSource`` and carry the name among its bytes (a guest passes it as a
    string constant). Running the module is the only way to know its fields and type.
    """
    from gadgetstore.engine.analysis.wasm import parse_wasm

    return "newDataSource" in parse_wasm(wasm).upcalls() and name.encode("utf-8", "surrogateescape") in wasm


# -- analyze: BTF marker variables ---------------------------------------------------------------


def analyze_object(collection: CollectionSpec) -> EbpfObject:
    """``ebpfInstance.analyze``: walk the BTF in type-id order and populate the marked structs."""
    found = EbpfObject(map_names=frozenset(collection.maps))
    btf = collection.btf
    for btf_type in btf.types:
        if not _is_marker(btf, btf_type):
            continue
        name = btf_type.name
        if name.startswith("gadget_tracer_"):
            _tracer(collection, found, name.removeprefix("gadget_tracer_"))
        elif name.startswith(("gadget_iter_", "gadget_snapshotter_")):  # the latter is IG's deprecated spelling
            _iterator(collection, found, name.split("_", 2)[2])
        elif name.startswith("gadget_mapiter_"):
            _mapiter(collection, found, name.removeprefix("gadget_mapiter_"), btf_type)
    return found


def _is_marker(btf: Btf, btf_type: BtfType) -> bool:
    """A global ``const void *`` VAR, the only shape IG's validator accepts."""
    if btf_type.kind != bk.KIND_VAR or btf_type.linkage != 1:
        return False
    pointer = btf.get(btf_type.ref)
    if pointer.kind != bk.KIND_PTR:
        return False
    const = btf.get(pointer.ref)
    return const.kind == bk.KIND_CONST and const.ref == 0


def _tracer(collection: CollectionSpec, found: EbpfObject, spec: str) -> None:
    """``populateTracer``: a later tracer of the same name replaces an earlier one."""
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
    found.tracers[name] = _populate(collection.btf, found, struct)


def _iterator(collection: CollectionSpec, found: EbpfObject, spec: str) -> None:
    """``populateIterators``: the first iterator of a name wins (its struct alone is populated)."""
    parts = spec.split(_SPLIT)
    if len(parts) < 3:
        raise AnalysisError(f"BTF: invalid iterator definition {spec!r} at byte offset 0")
    name, struct_name, programs = parts[0], parts[1], parts[2:]
    for program in programs:
        program_spec = collection.programs.get(program)
        if program_spec is None or not program_spec.section.startswith("iter/"):
            raise AnalysisError(f"BTF: iterator {name!r}: program {program!r} is not an iter/ program "
                                f"of the eBPF object at byte offset 0")
    if name in found.iterators:
        return
    struct = _struct_by_name(collection.btf, struct_name)
    found.iterators[name] = _populate(collection.btf, found, struct)


def _mapiter(collection: CollectionSpec, found: EbpfObject, spec: str, marker: BtfType) -> None:
    """``populateMapIter``: a hash map with struct key and value; a second one of a name is an error."""
    parts = spec.split(_SPLIT)
    if len(parts) != 2:
        raise AnalysisError(f"BTF: invalid name for gadget_mapiter type {spec!r} at byte offset 0")
    name, map_name = parts
    if name in found.mapiters:
        raise AnalysisError(f"BTF: duplicate map iterator {name!r} at byte offset {marker.record_offset}")
    iter_map = collection.maps.get(map_name)
    if iter_map is None or iter_map.type != _MAP_HASH:
        raise AnalysisError(f"BTF: map iterator {name!r}: {map_name!r} is not a hash map of the eBPF object "
                            f"at byte offset 0")
    btf = collection.btf
    key, value = _map_key_value(btf, map_name)
    key_struct = _populate(btf, found, key)
    found.mapiters[name] = (key_struct, _populate(btf, found, value))


def _map_key_value(btf: Btf, map_name: str) -> tuple[BtfType, BtfType]:
    """The key and value structs of a BTF-defined map (cilium keeps them unresolved: no typedefs)."""
    datasec = btf.find_datasec(".maps")
    for info in datasec.secinfos if datasec else ():
        var = btf.get(info.type_id)
        if var.name != map_name:
            continue
        definition = btf.skip_qualifiers(var.ref)
        members: dict[str, BtfType] = {}
        for member in definition.members:
            if member.name in ("key", "value") and btf.get(member.type_id).kind == bk.KIND_PTR:
                members[member.name] = btf.get(btf.get(member.type_id).ref)
        key, value = members.get("key"), members.get("value")
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


def _populate(btf: Btf, found: EbpfObject, struct: BtfType) -> _Struct:
    """``populateStructDirect``: each struct name is flattened once; its enum members are noted then."""
    cached = found.structs.get(struct.name)
    if cached is not None:
        return cached
    fields: list[StaticField] = []
    _add_members(btf, struct, fields, found.enums, 0, -1, "", 0)
    for entry in fields:
        if entry.offs + entry.size > struct.size:
            raise AnalysisError(f"BTF: field {entry.name!r} exceeds struct {struct.name!r} "
                                f"at byte offset {struct.record_offset}")
    populated = _Struct(struct.size, fields)
    found.structs[struct.name] = populated
    return populated


def _add_members(btf: Btf, container: BtfType, fields: list[StaticField], enums: list[str], base: int,
                 parent: int, prefix: str, depth: int) -> None:
    """``getFieldsFromMember``: nested structs/unions become a Bytes field plus their children."""
    if depth > _MAX_DEPTH:
        raise AnalysisError(f"BTF: struct nesting too deep at byte offset {container.record_offset}")
    for member in container.members:
        if member.name.startswith("__"):
            continue
        member_type = btf.get(member.type_id)
        names, resolved = _type_names(btf, member_type)
        annotations: dict[str, str] = {}
        for type_name in names:
            if type_name in _TEMPLATED_TYPES:
                ds.apply_template(type_name.removeprefix("gadget_"), annotations)
            elif type_name in _PROCESS_TYPES:
                annotations[ds.HIDDEN_ANNOTATION] = "true"
        if container.name in _PROCESS_TYPES:
            annotations["columns.alias"] = member.name
        tags = [f"type:{type_name}" for type_name in names] + [f"name:{member.name}", "src:ebpf"]
        offs = base + member.bit_offset // 8
        if member_type.kind in (bk.KIND_STRUCT, bk.KIND_UNION):
            fields.append(StaticField(member.name, offs, member_type.size, ds.KIND_BYTES, tags, annotations, parent))
            _add_members(btf, member_type, fields, enums, offs, len(fields) - 1, f"{prefix}{member.name}.",
                         depth + 1)
            continue
        if resolved is None:
            continue
        kind, size = resolved
        if not size:
            continue
        if member_type.kind in (bk.KIND_ENUM, bk.KIND_ENUM64):
            enums.append(prefix + member.name)
        fields.append(StaticField(member.name, offs, size, kind, tags, annotations, parent))


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
    if dims == 1 and scalar == ds.KIND_INT8 and is_char:
        return ds.KIND_CSTRING
    inner = _array_kind(scalar, dims - 1, is_char)
    return ds.KIND_INVALID if inner & ds.KIND_ARRAY_FLAG else inner | ds.KIND_ARRAY_FLAG


def _simple_kind(btf_type: BtfType) -> tuple[int, int] | None:
    """The Go scalar IG maps an INT/ENUM/FLOAT to; None for anything else (pointers, odd sizes)."""
    size = btf_type.size
    widths = {1: 0, 2: 1, 4: 2, 8: 3}
    if btf_type.kind == bk.KIND_INT and btf_type.int_encoding in (_INT_BOOL, _INT_CHAR):
        return (ds.KIND_BOOL if btf_type.int_encoding == _INT_BOOL else ds.KIND_UINT8), 1  # Go's bool / uint8
    if size not in widths:
        return None
    signed_kinds = (ds.KIND_INT8, ds.KIND_INT16, ds.KIND_INT32, ds.KIND_INT64)
    unsigned_kinds = (ds.KIND_UINT8, ds.KIND_UINT16, ds.KIND_UINT32, ds.KIND_UINT64)
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
        return (ds.KIND_FLOAT32 if size == 4 else ds.KIND_FLOAT64), size
    return None


# -- register: data sources from the analysed object ---------------------------------------------


def register_ebpf(context: GadgetContext, found: EbpfObject) -> None:
    """``ebpfInstance.register`` then ``initFormatters`` and ``evaluateMapParams``, as ``init`` runs them.

    Tracers are registered first, then iterators, then map iterators; a later one of the same name
    replaces an earlier one, as ``RegisterDataSource`` does.
    """
    from gadgetstore.engine.analysis.operator_rules import ebpf_enum_formatter, ebpf_kstack_formatter

    for name, struct in found.tracers.items():
        source = context.register(ds.TYPE_SINGLE, name)
        source.add_static_fields(struct.size, struct.fields)
        rest = source.annotations.get(REST_NAME)
        if rest is not None:
            source.add_field(rest, ds.KIND_BYTES)
            rest_len = source.annotations.get(REST_LEN)
            if rest_len is not None and source.get_field(rest_len) is None:
                raise AnalysisError(f"datasource {name!r}: rest length accessor field {rest_len!r} not found")
    for name, struct in found.iterators.items():
        source = context.register(ds.TYPE_ARRAY, name)
        source.add_static_fields(struct.size, struct.fields)
        for annotation, default in ((FETCH_INTERVAL, "0"), (FETCH_COUNT, "1")):
            if not source.annotations.get(annotation):
                source.annotations[annotation] = default
    mapiter_sources = []
    for name, (key, value) in found.mapiters.items():
        source = context.register(ds.TYPE_ARRAY, name)
        key_fields = [StaticField(f.name, f.offs, f.size, f.kind, f.tags + ["role:key"] * ("role:key" not in f.tags),
                                  f.annotations, f.parent) for f in key.fields]
        source.add_static_fields(key.size, key_fields)
        source.add_static_fields(value.size, value.fields)
        mapiter_sources.append(source)
    for source in list(context.sources.values()):
        ebpf_enum_formatter(source, found.enums)
    for source in list(context.sources.values()):
        ebpf_kstack_formatter(source, found.map_names)
    for source in mapiter_sources:
        source.annotations.update(MAPITER_FETCH)
