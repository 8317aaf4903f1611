"""sigs.k8s.io/yaml YAMLToJSON and ig's json.Unmarshal into a map (go-yaml v2 decode.go)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import yaml

from gadgetstore.engine.gonumbers import format_float, json_float

from .scalars import BINARY, MERGE, TIMESTAMP, GoYamlError, resolve


@dataclass(eq=False)
class _Node:
    kind: str  # scalar, mapping, sequence, alias
    tag: str = ""
    implicit: bool = False
    value: str = ""
    children: list[_Node] = field(default_factory=list)
    alias: _Node | None = None


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's own parser when PyYAML has it: go-yaml's parser is a port of it (PyYAML's pure-Python
scanner refuses, for one, a tab inside a plain scalar)."""


def _parse(text: str) -> _Node | None:
    """The first document's tree, from PyYAML's parser events (its resolver and composer are not used)."""
    anchors: dict[str, _Node] = {}
    stack: list[_Node] = []
    root: _Node | None = None

    def add(node: _Node, anchor: str | None) -> None:
        nonlocal root
        if anchor:
            anchors[anchor] = node
        if stack:
            stack[-1].children.append(node)
        else:
            root = node

    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.ScalarEvent):
                add(_Node("scalar", event.tag or "", bool(event.implicit[0]), event.value), event.anchor)
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchors:
                    raise GoYamlError(f"yaml: unknown anchor '{event.anchor}' referenced")
                add(_Node("alias", value=event.anchor or "", alias=anchors[event.anchor or ""]), None)
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                kind = "sequence" if isinstance(event, yaml.SequenceStartEvent) else "mapping"
                node = _Node(kind, event.tag or "")
                add(node, event.anchor)
                stack.append(node)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                stack.pop()
            elif isinstance(event, yaml.DocumentEndEvent):
                break
    except yaml.YAMLError as err:
        raise GoYamlError(f"yaml: {err}".replace("\n", " ")) from None
    return root


_ALIAS_RATIO_LOW, _ALIAS_RATIO_HIGH = 400_000, 4_000_000


def _allowed_alias_ratio(decodes: int) -> float:
    if decodes <= _ALIAS_RATIO_LOW:
        return 0.99
    if decodes >= _ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * ((decodes - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW))


@dataclass
class _Decoder:
    decodes: int = 0
    aliased: int = 0
    alias_depth: int = 0
    active: set[int] = field(default_factory=set)

    def unmarshal(self, node: _Node) -> Any:
        self.decodes += 1
        if self.alias_depth:
            self.aliased += 1
        if (self.aliased > 100 and self.decodes > 1000
                and self.aliased / self.decodes > _allowed_alias_ratio(self.decodes)):
            raise GoYamlError("yaml: document contains excessive aliasing")
        if node.kind == "alias":
            assert node.alias is not None
            if id(node) in self.active:
                raise GoYamlError(f"yaml: anchor '{node.value}' value contains itself")
            self.active.add(id(node))
            self.alias_depth += 1
            try:
                return self.unmarshal(node.alias)
            finally:
                self.alias_depth -= 1
                self.active.discard(id(node))
        if node.kind == "scalar":
            return self._scalar(node)
        if node.kind == "sequence":
            return [self.unmarshal(child) for child in node.children]
        out: dict[Any, Any] = {}
        self._mapping(node, out)
        return out

    @staticmethod
    def _scalar(node: _Node) -> Any:
        if not node.tag and not node.implicit:
            return node.value  # quoted
        tag, value = resolve(node.tag, node.value)
        if tag == BINARY:
            try:
                data = base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
                return data.decode("utf-8", errors="replace")
            except binascii.Error:
                raise GoYamlError("yaml: !!binary value contains invalid base64 data") from None
        if tag == TIMESTAMP:
            return node.value  # go-yaml v2 keeps a timestamp a string in an interface{}
        return value

    def _mapping(self, node: _Node, out: dict[Any, Any]) -> None:
        pairs = node.children
        for key_node, value_node in zip(pairs[::2], pairs[1::2], strict=True):
            if key_node.kind == "scalar" and key_node.value == "<<" and (key_node.implicit or key_node.tag == MERGE):
                self._merge(value_node, out)
                continue
            key = self.unmarshal(key_node)
            if isinstance(key, (dict, list)):
                raise GoYamlError(f"yaml: invalid map key: {key!r}")
            out[_GoKey(key)] = self.unmarshal(value_node)

    def _merge(self, node: _Node, out: dict[Any, Any]) -> None:
        def target(item: _Node) -> _Node:
            if item.kind == "mapping" or (item.kind == "alias" and item.alias is not None
                                          and item.alias.kind == "mapping"):
                return item
            raise GoYamlError("yaml: map merge requires map or sequence of maps as the value")

        items = [target(node)] if node.kind != "sequence" else [target(i) for i in reversed(node.children)]
        for item in items:
            merged = self.unmarshal(item)
            out.update(merged)


@dataclass(frozen=True)
class _GoKey:
    """A map key as Go's map[interface{}]interface{} tells keys apart: by type and value."""

    value: Any

    def __hash__(self) -> int:
        return hash((type(self.value), self.value))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _GoKey) and type(other.value) is type(self.value)
                and other.value == self.value)


def _key_string(key: Any) -> str:
    """sigs.k8s.io/yaml convertToJSONableObject: YAML keys become JSON's string keys."""
    if isinstance(key, _GoKey):
        key = key.value
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        text = format_float(key, "g", 32)
        return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(text, text)
    raise GoYamlError("unsupported map key of type: <nil>")


def _jsonable(value: Any) -> Any:
    """convertToJSONableObject, then the ``json.Marshal``/``json.Unmarshal`` round trip: every number a float64."""
    if isinstance(value, dict):
        converted = {_key_string(k): _jsonable(v) for k, v in value.items()}
        return dict(sorted(converted.items()))  # json.Marshal writes a map's keys sorted
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    number = float(value)
    json_float(number)  # raises for NaN and ±Inf, as json.Marshal does
    return number


def yaml_to_json_object(text: str) -> dict[str, Any] | None:
    """inspect.go's ``text/yaml`` case: ``yaml.YAMLToJSON``, then ``json.Unmarshal`` into a map
    (numbers are float64, keys sorted); errors are worded as ig words them."""
    try:
        root = _parse(text)
        converted = _jsonable(None if root is None else _Decoder().unmarshal(root))
    except ValueError as err:
        raise GoYamlError(f"converting YAML to JSON: {err}") from None
    if converted is not None and not isinstance(converted, dict):
        kind = "array" if isinstance(converted, list) else (
            "string" if isinstance(converted, str) else "bool" if isinstance(converted, bool) else "number")
        raise GoYamlError(f"unmarshalling JSON content: json: cannot unmarshal {kind} into Go value of type "
                          "map[string]interface {}")
    return converted


