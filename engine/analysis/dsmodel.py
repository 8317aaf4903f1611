"""IG's data sources and fields in miniature: what ``--show-datasources`` prints, built as ig builds it.

Every operator rule (:mod:`.operator_rules`, the ebpf operator in :mod:`.datasources`) edits these
objects through the same few calls IG's operators make on ``pkg/datasource`` (``AddStaticFields``,
``AddField``, ``AddSubField``, ``SetHidden``, ``RemoveReference``), so index, payload index,
parent, order, flags and the gadget.yaml merge come out as IG computes them. The rendering follows
Go's ``encoding/json`` of ``api.DataSource`` / ``api.Field``: declaration order, ``omitempty``,
map keys sorted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gadgetstore.engine.errors import AnalysisError

TYPE_UNKNOWN = 0  # a source only a wasm module creates: its type is known when it runs
TYPE_SINGLE = 1
TYPE_ARRAY = 2

# api.Kind numbers (pkg/gadget-service/api/api.pb.go).
KIND_INVALID, KIND_BOOL = 0, 1
KIND_INT8, KIND_INT16, KIND_INT32, KIND_INT64 = 2, 3, 4, 5
KIND_UINT8, KIND_UINT16, KIND_UINT32, KIND_UINT64 = 6, 7, 8, 9
KIND_FLOAT32, KIND_FLOAT64 = 10, 11
KIND_STRING, KIND_CSTRING, KIND_BYTES = 12, 13, 14
KIND_ARRAY_FLAG = 0x10000000

# Field flag bits (pkg/datasource/field.go FieldFlag*).
FLAG_EMPTY = 1
FLAG_CONTAINER = 2
FLAG_HIDDEN = 4
FLAG_HAS_PARENT = 8
FLAG_STATIC_MEMBER = 16
FLAG_UNREFERENCED = 32

HIDDEN_ANNOTATION = "columns.hidden"
TEMPLATE_ANNOTATION = "template"

# Every field starts with these unless its creator passes annotations of its own
# (pkg/datasource/columns.go defaultFieldAnnotations; WithAnnotations replaces them).
DEFAULT_ANNOTATIONS = {"columns.width": "16", "columns.ellipsis": "end", "columns.alignment": "left"}

# pkg/metadata/v1/annotations.go AnnotationsTemplates, applied for a ``template`` annotation.
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


@dataclass(slots=True)
class StaticField:
    """One member of an eBPF struct as the ebpf operator hands it to ``AddStaticFields``.

    ``parent`` is -1 or the index of the enclosing member within the same struct's list.
    """

    name: str
    offs: int
    size: int
    kind: int
    tags: list[str]
    annotations: dict[str, str]
    parent: int


@dataclass(slots=True, eq=False)
class Field:
    """``api.Field``; ``parent`` is meaningful only with FLAG_HAS_PARENT."""

    name: str
    full_name: str
    index: int
    kind: int = KIND_INVALID
    payload_index: int = 0
    offs: int = 0
    size: int = 0
    flags: int = 0
    tags: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ANNOTATIONS))
    parent: int = 0
    order: int = 0

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "fullName": self.full_name, "index": self.index,
                               "payloadIndex": self.payload_index, "offs": self.offs, "size": self.size,
                               "flags": self.flags, "kind": self.kind, "tags": list(self.tags),
                               "annotations": dict(sorted(self.annotations.items())), "parent": self.parent,
                               "order": self.order}
        return {key: value for key, value in out.items() if value}


def go_string(value: object) -> str:
    """viper's ``GetStringMapString`` rendering of YAML scalars (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def string_map(value: object) -> dict[str, str]:
    return {str(k): go_string(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def string_list(value: object) -> list[str]:
    """viper's ``GetStringSlice``: a string is one element, a list is stringified item by item."""
    if isinstance(value, str):
        return [value] if value else []
    return [go_string(item) for item in value] if isinstance(value, list) else []


def mapping(value: object) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def sub(config: Mapping[str, Any], path: str) -> dict[str, Any] | None:
    """viper's ``Sub(path)`` on lower-cased keys: a literal dotted key first, else the nested path."""
    path = path.lower()
    if path in config:
        found: object = config[path]
    else:
        found = config
        for part in path.split("."):
            if not isinstance(found, Mapping) or part not in found:
                return None
            found = found[part]
    return mapping(found) if isinstance(found, Mapping) else None


def apply_template(name: str, annotations: dict[str, str]) -> None:
    """``ApplyAnnotationTemplates``: an unknown template name changes nothing (ig logs a warning)."""
    annotations.update(TEMPLATES.get(name, {}))


class DataSource:
    """``pkg/datasource/data.go`` dataSource: fields in creation order, names unique while referenced."""

    def __init__(self, kind: int, name: str, config: Mapping[str, Any] | None) -> None:
        self.type = kind
        self.name = name
        self.fields: list[Field] = []
        self._by_name: dict[str, Field] = {}
        self.payload_count = 0
        self._config = config
        self.tags: list[str] = string_list(config.get("tags")) if config else []
        self.annotations: dict[str, str] = string_map(config.get("annotations")) if config else {}
        self._fields_config = sub(config, "fields") if config else None

    def _error(self, message: str) -> AnalysisError:
        return AnalysisError(f"datasource {self.name!r}: {message}")

    # -- adding fields ------------------------------------------------------------------------

    def add_static_fields(self, size: int, members: Iterable[StaticField]) -> None:
        """``AddStaticFields``: one payload for the whole struct; members keep offsets, no order."""
        base = len(self.fields)
        new: list[Field] = []
        for member in members:
            if member.name in self._by_name:
                raise self._error(f"field {member.name!r} already exists")
            if member.offs + member.size > size:
                raise self._error(f"field {member.name!r} exceeds size of container")
            entry = Field(member.name, member.name, base + len(new), member.kind, self.payload_count, member.offs,
                          member.size, FLAG_STATIC_MEMBER, list(member.tags),
                          {**DEFAULT_ANNOTATIONS, **member.annotations})
            if member.parent >= 0:
                if member.parent >= len(new):
                    raise self._error(f"invalid parent for field {member.name!r}")
                entry.parent = base + member.parent
                entry.flags |= FLAG_HAS_PARENT
            new.append(entry)
        for entry in new:
            if entry.has(FLAG_HAS_PARENT):
                entry.full_name = new[entry.parent - base].full_name + "." + entry.name
        self._apply_config(new)
        self.fields.extend(new)
        for entry in new:
            self._by_name[entry.full_name] = entry
        self.payload_count += 1

    def add_field(self, name: str, kind: int, *, flags: int = 0, tags: Iterable[str] = (),
                  annotations: Mapping[str, str] | None = None, order: int = 0,
                  same_parent_as: Field | None = None, same_order_as: Field | None = None) -> Field:
        """``AddField`` with its options; a field without an order gets its index as order."""
        entry = Field(name, name, len(self.fields), kind, flags=flags, tags=list(tags))
        if annotations is not None:
            entry.annotations = dict(annotations)
        if same_parent_as is not None and same_parent_as.has(FLAG_HAS_PARENT):
            entry.parent = same_parent_as.parent
            entry.flags |= FLAG_HAS_PARENT
        entry.order = same_order_as.order if same_order_as is not None else order
        if entry.order == 0:
            entry.order = entry.index
        if entry.has(FLAG_HAS_PARENT):
            entry.full_name = self.fields[entry.parent].full_name + "." + name
        return self._append(entry)

    def add_sub_field(self, parent: Field, name: str, kind: int, *, flags: int = 0, tags: Iterable[str] = (),
                      annotations: Mapping[str, str] | None = None, order: int = 0) -> Field:
        """``fieldAccessor.AddSubField``: like AddField under ``parent``; no order unless given."""
        entry = Field(name, parent.full_name + "." + name, len(self.fields), kind, flags=flags | FLAG_HAS_PARENT,
                      tags=list(tags), parent=parent.index, order=order)
        if annotations is not None:
            entry.annotations = dict(annotations)
        return self._append(entry)

    def _append(self, entry: Field) -> Field:
        if entry.full_name in self._by_name:
            raise self._error(f"field {entry.full_name!r} already exists")
        if not entry.has(FLAG_EMPTY):
            entry.payload_index = self.payload_count
            self.payload_count += 1
        self._apply_config([entry])
        self.fields.append(entry)
        self._by_name[entry.full_name] = entry
        return entry

    def _apply_config(self, new: list[Field]) -> None:
        """``applyFieldConfig``: own template, then gadget.yaml tags/template/annotations, then hidden."""
        for entry in new:
            if TEMPLATE_ANNOTATION in entry.annotations:
                apply_template(entry.annotations[TEMPLATE_ANNOTATION], entry.annotations)
            config = sub(self._fields_config, entry.full_name) if self._fields_config else None
            if config is None:
                continue
            entry.tags.extend(string_list(config.get("tags")))
            configured = string_map(config.get("annotations"))
            if TEMPLATE_ANNOTATION in configured:
                apply_template(configured[TEMPLATE_ANNOTATION], entry.annotations)
            entry.annotations.update(configured)
        for entry in new:
            if entry.annotations.get(HIDDEN_ANNOTATION) == "true":
                entry.flags |= FLAG_HIDDEN

    # -- looking fields up --------------------------------------------------------------------

    def get_field(self, name: str) -> Field | None:
        """``GetField``: the exact full name, else a case-insensitive match (first in field order)."""
        found = self._by_name.get(name)
        if found is not None:
            return found
        folded = name.casefold()
        return next((f for f in self.fields if f.full_name in self._by_name and f.full_name.casefold() == folded),
                    None)

    def fields_with_tag(self, *tags: str) -> list[Field]:
        """``GetFieldsWithTag``: fields carrying any of ``tags``, in field order."""
        return [f for f in self.fields if any(tag in f.tags for tag in tags)]

    def sub_fields(self, parent: Field) -> list[Field]:
        return [f for f in self.fields if f.has(FLAG_HAS_PARENT) and f.parent == parent.index]

    def sub_fields_with_tag(self, parent: Field, *tags: str) -> list[Field]:
        return [f for f in self.sub_fields(parent) if any(tag in f.tags for tag in tags)]

    # -- changing fields ----------------------------------------------------------------------

    def set_hidden(self, entry: Field, hidden: bool, recurse: bool = False) -> None:
        if hidden:
            entry.flags |= FLAG_HIDDEN
        else:
            entry.flags &= ~FLAG_HIDDEN
        if recurse:
            for child in self.sub_fields(entry):
                self.set_hidden(child, hidden, recurse)

    def remove_reference(self, entry: Field, recurse: bool) -> None:
        """The field stays in the list, flagged unreferenced, and its name is free again."""
        entry.flags |= FLAG_UNREFERENCED
        self._by_name.pop(entry.full_name, None)
        if recurse:
            for child in self.sub_fields(entry):
                self.remove_reference(child, recurse)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "fields": [f.to_json() for f in self.fields],
                               "tags": list(self.tags), "annotations": dict(sorted(self.annotations.items()))}
        return {key: value for key, value in out.items() if value}


def set_field_visibility(source: DataSource, entry: Field, default_hidden: bool) -> None:
    """``annotations.SetFieldVisibility``: hide the field and its children, then let columns.hidden decide."""
    source.set_hidden(entry, True, recurse=True)
    configured = entry.annotations.get(HIDDEN_ANNOTATION)
    source.set_hidden(entry, default_hidden if configured is None else configured == "true")


def target_name(entry: Field, annotation: str) -> str | None:
    """``annotations.GetTargetNameFromAnnotation``: the annotation's value, else the name minus ``_raw``."""
    if annotation in entry.annotations:
        return entry.annotations[annotation]
    if entry.name.endswith("_raw"):
        return entry.name.removesuffix("_raw")
    return None


class GadgetContext:
    """The part of ig's GadgetContext the operators use here: gadget.yaml as viper sees it, the sources."""

    def __init__(self, metadata: object) -> None:
        self.config: dict[str, Any] = mapping(lower_keys(metadata))
        self.sources: dict[str, DataSource] = {}

    def register(self, kind: int, name: str) -> DataSource:
        """``RegisterDataSource``: a second source of the same name replaces the first."""
        source = DataSource(kind, name, sub(self.config, "datasources." + name))
        self.sources[name] = source
        return source

    def setting(self, path: str) -> object:
        """A viper ``Get`` of a dotted key (None when absent)."""
        node: object = self.config
        for part in path.lower().split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def to_json(self) -> list[dict[str, Any]]:
        """``SerializeGadgetInfo``: every source, sorted by name (byte order, as Go compares strings)."""
        ordered = sorted(self.sources.values(), key=lambda s: s.name.encode("utf-8", "surrogateescape"))
        return [source.to_json() for source in ordered]


def lower_keys(value: object) -> object:
    """viper lower-cases every key of the config it reads; lookups and annotation keys follow suit."""
    if isinstance(value, Mapping):
        return {str(k).lower(): lower_keys(v) for k, v in value.items()}
    return value
