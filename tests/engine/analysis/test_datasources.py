"""Offline ``--show-datasources``: fields from the BTF of a real and a compiled gadget.

bpftool (libbpf's BTF decoder) is the oracle for member names, offsets and sizes of the real gadgets:
the suite's own trace_demo and (compatibility with ig) ig's trace_open.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gadgetstore.engine.analysis.datasources import datasources_from_elf
from gadgetstore.engine.errors import AnalysisError

PROJECT = Path(__file__).resolve().parents[3]
INCLUDE_DIR = PROJECT / "include"
DEMO_METADATA = PROJECT / "examples" / "trace_demo" / "gadget.yaml"
FIELD_KEYS = ["name", "fullName", "index", "payloadIndex", "offs", "size", "flags", "kind", "tags", "annotations",
              "parent", "order"]
DEFAULTS = {"columns.alignment": "left", "columns.ellipsis": "end", "columns.width": "16"}


def _bpftool_size(types: dict[int, dict[str, Any]], type_id: int) -> int:
    entry = types[type_id]
    if entry["kind"] in ("TYPEDEF", "CONST", "VOLATILE"):
        return _bpftool_size(types, entry["type_id"])
    if entry["kind"] == "ARRAY":
        return int(entry["nr_elems"]) * _bpftool_size(types, entry["type_id"])
    return int(entry["size"])


def _bpftool_event_members(elf: bytes, name: str, write_blob: Callable[[str, bytes], Path],
                           bpftool_types: Callable[[Path], list[dict[str, Any]]]) -> list[tuple[str, int, int]]:
    """``(name, byte offset, size)`` of each member of ``struct event``, as bpftool reads the BTF."""
    types = {int(t["id"]): t for t in bpftool_types(write_blob(name, elf))}
    (event,) = [t for t in types.values() if t["kind"] == "STRUCT" and t["name"] == "event"]
    return [(m["name"], m["bits_offset"] // 8, _bpftool_size(types, m["type_id"])) for m in event["members"]]


def test_trace_demo_tracer_matches_bpftool_and_gadget_yaml(
        demo_elves: dict[str, bytes], write_blob: Callable[[str, bytes], Path],
        bpftool_types: Callable[[Path], list[dict[str, Any]]]) -> None:
    elf = demo_elves["amd64"]
    expected = _bpftool_event_members(elf, "trace_demo_amd64.o", write_blob, bpftool_types)
    assert [name for name, _, _ in expected] == ["timestamp_raw", "pid", "uid", "dfd", "flags_raw", "comm", "fname"]

    (source,) = datasources_from_elf(elf, yaml.safe_load(DEMO_METADATA.read_text()))
    assert list(source) == ["name", "type", "fields"] and source["name"] == "open" and source["type"] == 1
    fields = source["fields"]
    assert [(f["name"], f.get("offs", 0), f["size"]) for f in fields] == expected
    assert [f.get("index", 0) for f in fields] == list(range(len(fields)))
    by_name = {f["name"]: f for f in fields}
    assert (by_name["comm"]["kind"], by_name["fname"]["kind"]) == (13, 13), "char[N] is a CString"
    assert (by_name["timestamp_raw"]["kind"], by_name["pid"]["kind"], by_name["dfd"]["kind"]) == (9, 8, 4)
    assert by_name["dfd"]["tags"] == ["type:__s32", "type:int", "name:dfd", "src:ebpf"]
    for hidden in ("timestamp_raw", "dfd", "flags_raw"):  # columns.hidden in gadget.yaml
        assert by_name[hidden]["flags"] == 16 | 4 and by_name[hidden]["annotations"]["columns.hidden"] == "true"
    assert by_name["pid"]["flags"] == 16
    assert by_name["pid"]["annotations"]["description"] == "Process ID of the caller"
    assert by_name["pid"]["annotations"]["template"] == "pid"
    assert by_name["fname"]["annotations"] == {**DEFAULTS, "columns.width": "32",
                                               "description": "File name as given to openat"}
    for entry in fields:
        assert list(entry) == [key for key in FIELD_KEYS if key in entry], "Go encoding/json field order"
    (plain,) = datasources_from_elf(elf)
    assert plain["fields"][0]["flags"] == 16, "without gadget.yaml nothing is hidden"


def test_trace_open_tracer_matches_bpftool(trace_open_elves: dict[str, bytes], write_blob: Callable[[str, bytes], Path],
                                           bpftool_types: Callable[[Path], list[dict[str, Any]]]) -> None:
    elf = trace_open_elves["amd64"]
    expected = _bpftool_event_members(elf, "trace_open_amd64.o", write_blob, bpftool_types)

    (source,) = datasources_from_elf(elf)
    assert list(source) == ["name", "type", "fields"] and source["name"] == "open" and source["type"] == 1
    fields = source["fields"]
    assert [(f["name"], f.get("offs", 0), f["size"]) for f in fields] == expected
    assert [f.get("index", 0) for f in fields] == list(range(len(fields)))
    by_name = {f["name"]: f for f in fields}
    assert by_name["comm"]["kind"] == 13 and by_name["fname"]["kind"] == 13, "char[N] is a CString"
    assert by_name["pid"]["kind"] == 8 and by_name["err"]["kind"] == 4 and by_name["mode"]["kind"] == 7
    assert by_name["pid"]["tags"] == ["type:__u32", "type:unsigned int", "name:pid", "src:ebpf"]
    assert by_name["pid"]["flags"] == 16 and by_name["pid"]["annotations"] == DEFAULTS
    timestamp = by_name["timestamp"]
    assert timestamp["flags"] == 16 | 4, "the gadget_timestamp template hides the column"
    assert timestamp["annotations"]["description"] == "Microseconds since Unix epoch"
    for entry in fields:
        assert list(entry) == [key for key in FIELD_KEYS if key in entry], "Go encoding/json field order"


def test_compiled_gadget_nested_fields_mapiter_and_metadata(gadget_objects: dict[str, Path]) -> None:
    metadata = {"datasources": {
        "exec": {"annotations": {"cli.clear-screen-before": True},
                 "fields": {"nested.a": {"annotations": {"description": "inner a"}},
                            "comm": {"annotations": {"template": "comm", "columns.width": 20}}}},
        "calls": {"tags": ["x"]}}}
    calls, exec_ = datasources_from_elf(gadget_objects["datasources"].read_bytes(), metadata)
    assert exec_["name"] == "exec" and exec_["type"] == 1
    assert exec_["annotations"] == {"cli.clear-screen-before": "true"}
    fields = {f["fullName"]: f for f in exec_["fields"]}
    assert list(fields) == ["timestamp", "pid", "failed", "comm", "nested", "nested.a", "nested.tag", "raw",
                            "raw.as_u32", "raw.bytes", "op", "delta", "ratio", "names"], \
        "pointers and __-prefixed members are skipped"
    nested = fields["nested"]
    assert (nested["kind"], nested["offs"], nested["size"], nested["index"]) == (14, 32, 8, 4)
    inner = fields["nested.a"]
    assert (inner["name"], inner["parent"], inner["flags"], inner["offs"], inner["kind"]) == ("a", 4, 16 | 8, 32, 8)
    assert inner["annotations"] == {**DEFAULTS, "description": "inner a"}
    assert fields["nested.tag"]["kind"] == 13 and fields["nested.tag"]["offs"] == 36
    assert fields["raw.bytes"]["kind"] == 6 | 0x10000000 and fields["raw.bytes"]["parent"] == 7
    assert fields["raw.as_u32"]["offs"] == fields["raw.bytes"]["offs"] == 40
    assert fields["failed"]["kind"] == 1 and fields["failed"]["size"] == 1
    assert (fields["op"]["kind"], fields["delta"]["kind"], fields["ratio"]["kind"]) == (8, 3, 10)
    assert fields["names"]["kind"] == 13 | 0x10000000, "char[2][8]: array of CString, as ig's getFieldKind"
    comm = fields["comm"]["annotations"]
    assert comm["columns.width"] == "20" and comm["description"] == "Process name" and comm["template"] == "comm"

    assert calls["name"] == "calls" and calls["type"] == 2 and calls["tags"] == ["x"]
    key, value = calls["fields"]
    assert key["name"] == "pid" and "role:key" in key["tags"] and "payloadIndex" not in key
    assert value["name"] == "calls" and value["payloadIndex"] == 1 and value["index"] == 1 and value["kind"] == 9
    assert "role:key" not in value["tags"]
    assert json.loads(json.dumps([calls, exec_])) == [calls, exec_]


_BROKEN_TRACER = """
#include <gadget/bpf_helpers.h>
struct event { u32 pid; };
const struct event *unused_event __attribute__((unused));
const void *gadget_tracer_exec___nosuchmap___event __attribute__((unused));
char LICENSE[] SEC("license") = "GPL";
"""


def test_tracer_naming_a_missing_map_is_an_analysis_error(tmp_path: Path) -> None:
    source = tmp_path / "broken.bpf.c"
    source.write_text(_BROKEN_TRACER)
    target = tmp_path / "broken.o"
    subprocess.run(["clang", "-target", "bpf", "-g", "-O2", "-D__TARGET_ARCH_x86", "-I/usr/include/x86_64-linux-gnu",
                    f"-I{INCLUDE_DIR}", "-c", str(source), "-o", str(target)], check=True, capture_output=True)
    with pytest.raises(AnalysisError, match="nosuchmap"):
        datasources_from_elf(target.read_bytes())


def test_objects_without_markers_have_no_datasources(gadget_objects: dict[str, Path]) -> None:
    assert datasources_from_elf(gadget_objects["hash_array"].read_bytes()) == []


def test_gadget_yaml_is_matched_case_insensitively_like_viper(gadget_objects: dict[str, Path]) -> None:
    """ig reads gadget.yaml through viper, which lower-cases keys (annotation keys included)."""
    metadata = {"dataSources": {"EXEC": {"annotations": {"Cli.Mode": 1},
                                         "fields": {"Nested": {"A": {"annotations": {"Columns.Hidden": True}}}}}}}
    _, exec_ = datasources_from_elf(gadget_objects["datasources"].read_bytes(), metadata)
    assert exec_["annotations"] == {"cli.mode": "1"}
    inner = exec_["fields"][5]
    assert inner["fullName"] == "nested.a" and inner["annotations"]["columns.hidden"] == "true"
    assert inner["flags"] == 16 | 8 | 4
