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

from gadgetstore.engine.analysis.datasources import gadget_datasources
from gadgetstore.engine.analysis.dsmodel import FLAG_STATIC_MEMBER
from gadgetstore.engine.analysis.operator_rules import go_duration_string, go_parse_duration
from gadgetstore.engine.errors import AnalysisError

PROJECT = Path(__file__).resolve().parents[3]
INCLUDE_DIR = PROJECT / "include"
DEMO_METADATA = PROJECT / "examples" / "trace_demo" / "gadget.yaml"
FIELD_KEYS = ["name", "fullName", "index", "payloadIndex", "offs", "size", "flags", "kind", "tags", "annotations",
              "parent", "order"]
DEFAULTS = {"columns.alignment": "left", "columns.ellipsis": "end", "columns.width": "16"}
# compat.WrapAccessors (pkg/datasource/compat/wrapper.go): what localmanager adds to a source with a
# gadget_mntns_id or gadget_netns_id field, in this order.
ENRICHMENT = ["k8s", "k8s.node", "k8s.namespace", "k8s.podName", "k8s.containerName", "k8s.hostnetwork",
              "k8s.podLabels", "k8s.owner", "k8s.owner.kind", "k8s.owner.name", "runtime", "runtime.containerName",
              "runtime.runtimeName", "runtime.containerId", "runtime.containerPid", "runtime.containerImageName",
              "runtime.containerImageDigest", "runtime.containerStartedAt"]


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

    (source,) = gadget_datasources(yaml.safe_load(DEMO_METADATA.read_text()), elf)
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
    (plain,) = gadget_datasources(None, elf)
    assert plain["fields"][0]["flags"] == 16, "without gadget.yaml nothing is hidden"


def test_trace_open_tracer_matches_bpftool(trace_open_elves: dict[str, bytes], write_blob: Callable[[str, bytes], Path],
                                           bpftool_types: Callable[[Path], list[dict[str, Any]]]) -> None:
    elf = trace_open_elves["amd64"]
    expected = _bpftool_event_members(elf, "trace_open_amd64.o", write_blob, bpftool_types)

    (source,) = gadget_datasources(None, elf)
    assert list(source) == ["name", "type", "fields"] and source["name"] == "open" and source["type"] == 1
    static = [f for f in source["fields"] if f["flags"] & FLAG_STATIC_MEMBER]
    assert [(f["name"], f.get("offs", 0), f["size"]) for f in static] == expected
    assert [f.get("index", 0) for f in static] == list(range(len(static)))
    by_name = {f["name"]: f for f in static}
    assert by_name["comm"]["kind"] == 13 and by_name["fname"]["kind"] == 13, "char[N] is a CString"
    assert by_name["pid"]["kind"] == 8 and by_name["err"]["kind"] == 4 and by_name["mode"]["kind"] == 7
    assert by_name["pid"]["tags"] == ["type:__u32", "type:unsigned int", "name:pid", "src:ebpf"]
    assert by_name["pid"]["flags"] == 16 and by_name["pid"]["annotations"] == DEFAULTS
    timestamp = by_name["timestamp"]
    assert timestamp["flags"] == 16 | 4, "the gadget_timestamp template hides the column"
    assert timestamp["annotations"]["description"] == "Microseconds since Unix epoch"
    # This 2024 build types only timestamp (no _raw suffix: no formatter) and mntns_id (localmanager's
    # k8s and runtime groups); its uid and gid are plain __u32, so no user or group name.
    added = [f["fullName"] for f in source["fields"][len(static):]]
    assert added == ENRICHMENT
    for entry in source["fields"]:
        assert list(entry) == [key for key in FIELD_KEYS if key in entry], "Go encoding/json field order"


def test_compiled_gadget_nested_fields_mapiter_and_metadata(gadget_objects: dict[str, Path]) -> None:
    metadata = {"datasources": {
        "exec": {"annotations": {"cli.clear-screen-before": True},
                 "fields": {"nested.a": {"annotations": {"description": "inner a"}},
                            "comm": {"annotations": {"template": "comm", "columns.width": 20}}}},
        "calls": {"tags": ["x"]}}}
    calls, exec_ = gadget_datasources(metadata, gadget_objects["datasources"].read_bytes())
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
    assert fields["op"]["flags"] == 16 | 4, "an enum is hidden; without a _raw suffix it gets no string field"
    assert fields["timestamp"]["flags"] == 16 | 4, "gadget_timestamp without _raw: templated, not formatted"
    assert fields["names"]["kind"] == 13 | 0x10000000, "char[2][8]: array of CString, as ig's getFieldKind"
    comm = fields["comm"]["annotations"]
    assert comm["columns.width"] == "20" and comm["description"] == "Process name" and comm["template"] == "comm"

    assert calls["name"] == "calls" and calls["type"] == 2 and calls["tags"] == ["x"]
    assert calls["annotations"] == {"fetch-count": "0", "fetch-interval": "1s"}, \
        "evaluateMapParams without instance params: map-fetch-count 0, map-fetch-interval 1000ms"
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
        gadget_datasources(None, target.read_bytes())


def test_objects_without_markers_have_no_datasources(gadget_objects: dict[str, Path]) -> None:
    assert gadget_datasources(None, gadget_objects["hash_array"].read_bytes()) == []


def test_gadget_yaml_is_matched_case_insensitively_like_viper(gadget_objects: dict[str, Path]) -> None:
    """ig reads gadget.yaml through viper, which lower-cases keys (annotation keys included)."""
    metadata = {"dataSources": {"EXEC": {"annotations": {"Cli.Mode": 1},
                                         "fields": {"Nested": {"A": {"annotations": {"Columns.Hidden": True}}}}}}}
    _, exec_ = gadget_datasources(metadata, gadget_objects["datasources"].read_bytes())
    assert exec_["annotations"] == {"cli.mode": "1"}
    inner = exec_["fields"][5]
    assert inner["fullName"] == "nested.a" and inner["annotations"]["columns.hidden"] == "true"
    assert inner["flags"] == 16 | 8 | 4


# (fullName, index, payloadIndex, flags, kind, parent, order) of gadgets/operator_rules.bpf.c's "ops"
# tracer, derived by hand from ig's operators in the order ig instantiates them (see each comment).
# Flags: 1 empty, 4 hidden, 8 has parent, 16 static member, 32 unreferenced. Kinds: 5 int64,
# 6 uint8, 7 uint16, 8 uint32, 9 uint64, 12 string, 14 bytes, 0x10000006 uint8 array.
OPS_FIELDS = [
    # ebpf operator, AddStaticFields of struct event: one payload, no order; typed members are hidden
    # by the rules below (enum, formatters, uid/gid), gadget_timestamp/mntns_id by their templates.
    ("timestamp_raw", 0, 0, 20, 9, 0, 0), ("mntns_id", 1, 0, 20, 9, 0, 0), ("uid", 2, 0, 20, 8, 0, 0),
    ("gid_raw", 3, 0, 20, 8, 0, 0), ("op_raw", 4, 0, 20, 8, 0, 0), ("state", 5, 0, 20, 8, 0, 0),
    ("error_raw", 6, 0, 20, 8, 0, 0), ("sig_raw", 7, 0, 20, 8, 0, 0), ("syscall_raw", 8, 0, 20, 9, 0, 0),
    ("size_raw", 9, 0, 20, 9, 0, 0), ("latency_raw", 10, 0, 20, 9, 0, 0), ("mode_raw", 11, 0, 20, 8, 0, 0),
    ("flags_raw", 12, 0, 20, 8, 0, 0), ("kstack_raw", 13, 0, 20, 8, 0, 0),
    # formatters.go handleL3Endpoint: the address union is unreferenced and, with every member of the
    # endpoint, hidden; the endpoint itself stays visible.
    ("dst", 14, 0, 16, 14, 0, 0), ("dst.addr_raw", 15, 0, 60, 14, 14, 0),
    ("dst.addr_raw.v6", 16, 0, 60, 0x10000006, 15, 0), ("dst.addr_raw.v4", 17, 0, 60, 8, 15, 0),
    ("dst.port", 18, 0, 28, 7, 14, 0), ("dst.proto_raw", 19, 0, 28, 7, 14, 0), ("dst.version", 20, 0, 28, 6, 14, 0),
    ("src", 21, 0, 16, 14, 0, 0), ("src.addr_raw", 22, 0, 60, 14, 21, 0),
    ("src.addr_raw.v6", 23, 0, 60, 0x10000006, 22, 0), ("src.addr_raw.v4", 24, 0, 60, 8, 22, 0),
    ("src.version", 25, 0, 28, 6, 21, 0),
    # ustack.go init: the user stack and its members are hidden.
    ("ustack", 26, 0, 20, 14, 0, 0), ("ustack.major", 27, 0, 28, 8, 26, 0), ("ustack.minor", 28, 0, 28, 8, 26, 0),
    ("ustack.inode", 29, 0, 28, 9, 26, 0), ("ustack.mtime_sec", 30, 0, 28, 9, 26, 0),
    ("ustack.mtime_nsec", 31, 0, 28, 8, 26, 0), ("ustack.base_addr_hash", 32, 0, 28, 8, 26, 0),
    ("ustack.stack_id", 33, 0, 28, 8, 26, 0), ("ustack.tgid_level0", 34, 0, 28, 8, 26, 0),
    ("ustack.pid_level0", 35, 0, 28, 8, 26, 0), ("ustack.pidns_level0", 36, 0, 28, 8, 26, 0),
    ("ustack.pid_level1", 37, 0, 28, 8, 26, 0), ("ustack.pidns_level1", 38, 0, 28, 8, 26, 0),
    # ebpf.go register: the ebpf.rest.name annotation adds a Bytes field (AddField: its own payload,
    # order = index); then formatters.go getFormattersForEnums and initStackConverter.
    ("payload", 39, 1, 0, 14, 0, 39), ("op", 40, 2, 0, 12, 0, 40), ("kstack", 41, 3, 0, 12, 0, 41),
    # localmanager (priority -1), compat.WrapAccessors: empty group fields, sub-fields with fixed orders;
    # the k8s group is hidden as a whole outside Kubernetes.
    ("k8s", 42, 0, 5, 0, 0, 42), ("k8s.node", 43, 4, 12, 12, 42, -31), ("k8s.namespace", 44, 5, 12, 12, 42, -30),
    ("k8s.podName", 45, 6, 12, 12, 42, -29), ("k8s.containerName", 46, 7, 12, 12, 42, -28),
    ("k8s.hostnetwork", 47, 8, 12, 1, 42, -27), ("k8s.podLabels", 48, 9, 12, 12, 42, -26),
    ("k8s.owner", 49, 0, 13, 0, 42, 0), ("k8s.owner.kind", 50, 10, 12, 12, 49, 0),
    ("k8s.owner.name", 51, 11, 12, 12, 49, 0), ("runtime", 52, 0, 1, 0, 0, 52),
    ("runtime.containerName", 53, 12, 8, 12, 52, -27), ("runtime.runtimeName", 54, 13, 12, 12, 52, -26),
    ("runtime.containerId", 55, 14, 12, 12, 52, -25), ("runtime.containerPid", 56, 15, 12, 8, 52, -24),
    ("runtime.containerImageName", 57, 16, 12, 12, 52, -23),
    ("runtime.containerImageDigest", 58, 17, 12, 12, 52, -22),
    ("runtime.containerStartedAt", 59, 18, 12, 5, 52, -21),
    # formatters operator (priority 0), replacers in table order: signal, errno, syscall, timestamp
    # (its template hides it), bytes, duration, l3endpoint, l4endpoint, file_mode, file_flags.
    ("sig", 60, 19, 0, 12, 0, 60), ("error", 61, 20, 0, 12, 0, 61), ("syscall", 62, 21, 0, 12, 0, 62),
    ("timestamp", 63, 22, 4, 12, 0, 63), ("size", 64, 23, 0, 12, 0, 64), ("latency", 65, 24, 0, 12, 0, 65),
    ("src.addr", 66, 25, 12, 12, 21, 0), ("dst.addr", 67, 26, 12, 12, 14, 0), ("dst.proto", 68, 27, 12, 12, 14, 0),
    ("dst.endpoint", 69, 28, 12, 12, 14, 0), ("mode", 70, 29, 0, 12, 0, 70), ("flags", 71, 30, 0, 12, 0, 71),
    # UidGidResolver (priority 5): "user" (no _raw suffix to take the name from) and "gid", hidden.
    ("user", 72, 31, 4, 12, 0, 72), ("gid", 73, 32, 4, 12, 0, 73),
    # ustack (priority 100): three hidden string sub-fields.
    ("ustack.addresses", 74, 33, 12, 12, 26, 0), ("ustack.buildid", 75, 34, 12, 12, 26, 0),
    ("ustack.symbols", 76, 35, 12, 12, 26, 0),
]
REST = {"datasources": {"ops": {"annotations": {"ebpf.rest.name": "payload"}}}}


def _row(field: dict[str, Any]) -> tuple[str, int, int, int, int, int, int]:
    return (field["fullName"], field.get("index", 0), field.get("payloadIndex", 0), field.get("flags", 0),
            field.get("kind", 0), field.get("parent", 0), field.get("order", 0))


def test_operator_rules_add_fields_as_ig_does(gadget_objects: dict[str, Path]) -> None:
    ops, tasks = gadget_datasources(REST, gadget_objects["operator_rules"].read_bytes())
    assert [_row(field) for field in ops["fields"]] == OPS_FIELDS
    assert ops["annotations"] == {"ebpf.rest.name": "payload"}
    # ebpf.go register: an iterator gets fetch-interval 0 and fetch-count 1 unless gadget.yaml sets them.
    assert tasks["name"] == "tasks" and tasks["type"] == 2
    assert tasks["annotations"] == {"fetch-count": "1", "fetch-interval": "0"}
    assert [f["fullName"] for f in tasks["fields"]] == ["pid"]


def test_operator_added_fields_carry_ig_annotations_and_tags(gadget_objects: dict[str, Path]) -> None:
    (ops, _) = gadget_datasources(REST, gadget_objects["operator_rules"].read_bytes())
    fields = {f["fullName"]: f for f in ops["fields"]}
    assert fields["op"]["annotations"] == fields["kstack"]["annotations"] == DEFAULTS, "plain AddField"
    assert fields["sig"]["annotations"] == {"value.one-of": ", ".join(
        ["SIGABRT", "SIGALRM", "SIGBUS", "SIGCHLD", "SIGCLD", "SIGCONT", "SIGFPE", "SIGHUP", "SIGILL", "SIGINT",
         "SIGIO", "SIGIOT", "SIGKILL", "SIGPIPE", "SIGPOLL", "SIGPROF", "SIGPWR", "SIGQUIT", "SIGSEGV", "SIGSTKFLT",
         "SIGSTOP", "SIGSYS", "SIGTERM", "SIGTRAP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGUNUSED", "SIGURG",
         "SIGUSR1", "SIGUSR2", "SIGVTALRM", "SIGWINCH", "SIGXCPU", "SIGXFSZ"])}, "WithAnnotations drops the defaults"
    error = fields["error"]["annotations"]
    assert (error["template"], error["columns.width"]) == ("errorString", "12")
    assert error["value.one-of"].startswith("E2BIG, EACCES, ") and error["value.one-of"].endswith(", EXDEV, EXFULL")
    assert len(error["value.one-of"].split(", ")) == 133
    assert fields["timestamp"]["annotations"] == {"template": "timestamp", "columns.width": "35",
                                                  "columns.maxwidth": "35", "columns.ellipsis": "end",
                                                  "columns.hidden": "true",
                                                  "description": "Microseconds since Unix epoch"}
    assert fields["size"]["annotations"] == {"template": "bytes", "columns.width": "10", "columns.alignment": "right"}
    assert fields["latency"]["annotations"] == {"template": "duration", "columns.width": "20",
                                                "columns.alignment": "right"}
    assert fields["syscall"]["annotations"] == fields["mode"]["annotations"] == DEFAULTS
    assert fields["src"]["annotations"]["columns.replace"] == "src.addr"
    assert fields["dst"]["annotations"]["columns.replace"] == "dst.endpoint", "the l4 replacer has the last word"
    endpoint = fields["dst.endpoint"]
    assert (endpoint["tags"], endpoint["annotations"]) == (["endpoint"], {"json.skip": "true"})
    assert fields["ustack.symbols"]["tags"] == ["name:symbols", "operator:ustack"]
    assert fields["k8s.node"]["tags"] == ["kubernetes"] and "tags" not in fields["runtime.containerName"]
    assert fields["k8s.node"]["annotations"] == {"template": "node", "columns.width": "30",
                                                 "columns.ellipsis": "middle"}
    assert fields["runtime.runtimeName"]["annotations"] == {"columns.width": "19", "columns.fixed": "true"}
    assert fields["runtime.containerPid"]["annotations"] == {"template": "containerPid", "columns.width": "6",
                                                             "columns.hidden": "true", "columns.alignment": "right"}
    for entry in ops["fields"]:
        assert list(entry) == [key for key in FIELD_KEYS if key in entry], "Go encoding/json field order"


def test_gadget_yaml_targets_and_configures_operator_fields(gadget_objects: dict[str, Path]) -> None:
    """Target-name annotations come from gadget.yaml; its field config reaches the fields operators add."""
    metadata = {"datasources": {"ops": {"fields": {
        "state": {"annotations": {"ebpf.formatter.enum": "state_name"}},
        "uid": {"annotations": {"uidgidresolver.target": "owner"}},
        "error_raw": {"annotations": {"formatters.errno.target": "errno", "columns.hidden": False}},
        "timestamp": {"annotations": {"columns.hidden": False}, "tags": ["shown"]},
        "user": {"annotations": {"description": "never added"}}}}}}
    (ops, _) = gadget_datasources(metadata, gadget_objects["operator_rules"].read_bytes())
    fields = {f["fullName"]: f for f in ops["fields"]}
    assert "state_name" in fields and fields["state"]["flags"] == 16 | 4
    assert "owner" in fields and "user" not in fields
    assert "errno" in fields and "error" not in fields
    assert fields["error_raw"]["flags"] == 16, "SetFieldVisibility follows a columns.hidden annotation"
    timestamp = fields["timestamp"]
    assert (timestamp.get("flags"), timestamp["tags"], timestamp["annotations"]["columns.hidden"]) == \
        (None, ["shown"], "false"), "the timestamp template hides it, gadget.yaml shows it again"


def _compile(tmp_path: Path, source: str) -> bytes:
    path = tmp_path / "gadget.bpf.c"
    path.write_text(source)
    target = tmp_path / "gadget.o"
    subprocess.run(["clang", "-target", "bpf", "-g", "-O2", "-D__TARGET_ARCH_x86", "-I/usr/include/x86_64-linux-gnu",
                    f"-I{INCLUDE_DIR}", "-c", str(path), "-o", str(target)], check=True, capture_output=True)
    return target.read_bytes()


_TRACER = """
#include <gadget/bpf_helpers.h>
typedef __u32 gadget_uid;
typedef __u32 gadget_kernel_stack;
struct event {{ {members} }};
struct {{ __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); }} events SEC(".maps");
const struct event *unused_event __attribute__((unused));
const void *gadget_tracer_exec___events___event __attribute__((unused));
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize(("members", "message"), [
    # uidgidresolver.go: both fall back to "user"; the second AddField fails and so does ig.
    ("gadget_uid uid; gadget_uid euid;", "datasource 'exec': field 'user' already exists"),
    # formatters.go initStackConverter refuses a kernel stack without <gadget/kernel_stack_map.h>'s map.
    ("gadget_kernel_stack kstack_raw;", "kernel stack map is not initialized but used"),
])
def test_gadgets_ig_refuses_are_refused(tmp_path: Path, members: str, message: str) -> None:
    elf = _compile(tmp_path, _TRACER.format(members=members))
    with pytest.raises(AnalysisError, match=message):
        gadget_datasources(None, elf)


def test_only_data_sources_an_operator_creates_are_listed(gadget_objects: dict[str, Path]) -> None:
    """gadget.yaml configures data sources; a name only it mentions is not a data source of ig's."""
    metadata = {"datasources": {"exec": {"annotations": {"x": "1"}}, "advise": {"annotations": {"y": "2"}}}}
    names = [source["name"] for source in gadget_datasources(metadata, gadget_objects["datasources"].read_bytes())]
    assert names == ["calls", "exec"]
    assert gadget_datasources(metadata, None) == []


def _wasm(upcall: str, data: bytes) -> bytes:
    """A module importing ``ig.<upcall>`` (type (i32, i32) -> ()), with ``data`` in a custom section."""
    def vec(*items: bytes) -> bytes:
        return bytes([len(items)]) + b"".join(items)

    def name(text: bytes) -> bytes:
        return bytes([len(text)]) + text

    def section(section_id: int, payload: bytes) -> bytes:
        return bytes([section_id, len(payload)]) + payload

    return (b"\0asm\x01\0\0\0" + section(1, vec(b"\x60\x02\x7f\x7f\x00"))
            + section(2, vec(name(b"ig") + name(upcall.encode()) + b"\x00\x00"))
            + section(0, name(b"strings") + data))


def test_wasm_module_may_create_a_gadget_yaml_data_source() -> None:
    """A data source only gadget.yaml names is listed, without fields, when the wasm module can create it."""
    metadata = {"datasources": {"advise": {"annotations": {"cli.default-output-mode": "advise"}}, "other": {}}}
    listed = gadget_datasources(metadata, None, _wasm("newDataSource", b"advise\0text"))
    assert listed == [{"name": "advise", "annotations": {"cli.default-output-mode": "advise"}}]
    assert gadget_datasources(metadata, None, _wasm("getDataSource", b"advise")) == []


def test_metadata_only_gadgets_get_the_config_driven_sources() -> None:
    """process.go, cgroup.go and ebpf/stats.go create their sources when gadget.yaml's operator config asks."""
    top_process = {"operator": {"process": {"emitstats": True, "interval": "3s", "fields": ["comm", "memoryRSS"]}},
                   "datasources": {"processes": {"fields": {"memoryRSS": {"annotations": {"columns.alias": "RES"}}}}}}
    (processes,) = gadget_datasources(top_process, None)
    assert (processes["name"], processes["type"]) == ("processes", 2)
    assert processes["annotations"] == {"fetch-interval": "3s"}
    assert [f["fullName"] for f in processes["fields"]] == ["pid", "comm", "memoryRSS_raw", "mountnsid", *ENRICHMENT,
                                                           "memoryRSS"]
    fields = {f["fullName"]: f for f in processes["fields"]}
    assert fields["memoryRSS_raw"]["flags"] == 4 and fields["memoryRSS"]["annotations"]["columns.alias"] == "RES"
    assert fields["pid"]["annotations"] == {"template": "pid", "description": "Process ID", "columns.minwidth": "7",
                                            "columns.alignment": "right"}
    (every,) = gadget_datasources({"operator": {"process": {"emitstats": "true"}}}, None)
    assert every["annotations"] == {"fetch-interval": "1m0s"}, "no interval: 60s, as Go prints it"
    assert [f["fullName"] for f in every["fields"]][:17] == [
        "pid", "ppid", "comm", "priority", "nice", "cpuUsage", "cpuUsageRelative", "memoryRSS_raw",
        "memoryVirtual_raw", "memoryShared_raw", "memoryRelative", "threadCount", "state", "uid", "startTime",
        "startTimeStr", "cpuTime"]
    (cgroups,) = gadget_datasources({"operator": {"cgroup": {"emitstats": True}}}, None)
    assert cgroups["annotations"] == {"fetch-interval": "5s"}
    assert [f["fullName"] for f in cgroups["fields"]][:11] == [
        "cgroupPath", "nrPeriods", "nrThrottled", "throttledTime_raw", "throttleRatio", "cpuQuota_raw",
        "cpuPeriod_raw", "cpuLimitCores", "psiSomeAvg10", "psiSomeAvg60", "mountnsid"]
    (stats,) = gadget_datasources({"operator": {"ebpf": {"emitstats": True}}}, None)
    assert stats["annotations"] == {"cli.clear-screen-before": "true", "fetch-interval": "1000ms"}
    assert [f["fullName"] for f in stats["fields"]][-4:] == ["comms", "pids", "mapMemory", "runtime"], \
        "the bytes replacer runs before the duration one"
    assert gadget_datasources({"operator": {"process": {"emitstats": False}}}, None) == []


@pytest.mark.parametrize(("value", "nanoseconds", "printed"), [
    ("3s", 3_000_000_000, "3s"), ("250ms", 250_000_000, "250ms"), ("1.5h", 5_400_000_000_000, "1h30m0s"),
    ("1m", 60_000_000_000, "1m0s"), (1500, 1500, "1.5µs"), ("90", 90, "90ns"), ("2h3m4.5s", 7_384_500_000_000,
                                                                                "2h3m4.5s"),
    ("soon", 0, "0s"), ("1x", 0, "0s"), ("-2s", -2_000_000_000, "-2s"), (".5s", 500_000_000, "500ms"),
])
def test_durations_read_and_print_as_go_does(value: object, nanoseconds: int, printed: str) -> None:
    """viper's GetDuration (cast.ToDuration) and time.Duration.String, which the fetch-interval shows."""
    assert go_parse_duration(value) == nanoseconds
    assert go_duration_string(nanoseconds) == printed
