"""End-to-end ``ebpf.*`` extra info of the test gadgets, the suite's trace_demo image and ig's trace_open.

The trace_open tests check compatibility with ig's real export and skip without it; trace_demo's
expected values follow from ``examples/trace_demo/program.bpf.c``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from gadgetstore.engine.analysis.extrainfo import analyze_ebpf
from gadgetstore.engine.analysis.spec import MapSpec, map_type_name

ALL_KEYS = {"ebpf.sections", "ebpf.maps", "ebpf.programs", "ebpf.variables", "ebpf.flowchart", "ebpf.sequence"}


def analyze(path: Path) -> dict[str, object]:
    """Decoded contents: JSON keys parsed, mermaid keys as text."""
    info = analyze_ebpf(path.read_bytes())
    assert set(info) == ALL_KEYS
    return {key: json.loads(content) if content_type == "application/json" else content.decode()
            for key, (content_type, content) in info.items()}


def programs_by_section(info: dict[str, object]) -> dict[str, list[dict[str, str]]]:
    result: dict[str, list[dict[str, str]]] = {}
    programs = info["ebpf.programs"]
    assert isinstance(programs, list)
    for program in programs:
        result.setdefault(program["Section"], []).append(program)
    return result


def test_content_types_and_go_json_encoding(gadget_objects: dict[str, Path]) -> None:
    info = analyze_ebpf(gadget_objects["hash_array"].read_bytes())
    assert {key: content_type for key, (content_type, _) in info.items()} == {
        "ebpf.sections": "application/json", "ebpf.maps": "application/json", "ebpf.programs": "application/json",
        "ebpf.variables": "application/json", "ebpf.flowchart": "text/mermaid", "ebpf.sequence": "text/mermaid"}
    programs = info["ebpf.programs"][1]
    assert b"\\u003ccounts\\u003e" in programs and b"<" not in programs and b", " not in programs[:40]
    assert info["ebpf.variables"][1] == (
        b'[{"Name":"events_seen","Offset":0,"Size":8,"Map":".bss"},'
        b'{"Name":"sample_rate","Offset":0,"Size":4,"Map":".data"},'
        b'{"Name":"target_pid","Offset":0,"Size":4,"Map":".rodata"}]')


@pytest.mark.parametrize(("gadget", "maps"), [
    ("hash_array", [{"Name": ".data", "Type": "Array"}, {"Name": "counts", "Type": "Hash"},
                    {"Name": "totals", "Type": "Array"}]),
    ("percpu_ringbuf", [{"Name": "per_cpu_calls", "Type": "PerCPUHash"}, {"Name": "ring", "Type": "RingBuf"},
                        {"Name": "scratch", "Type": "PerCPUArray"}]),
    ("perf_lru", [{"Name": "perf_events", "Type": "PerfEventArray"}, {"Name": "recent", "Type": "LRUHash"}]),
    ("lsm_subprog", [{"Name": "denied", "Type": "Hash"}]),
    ("core_read", [{"Name": "tgids", "Type": "Queue"}]),
    ("legacy_printk", [{"Name": ".data.counters", "Type": "Array"}, {"Name": "old_style", "Type": "Array"}]),
])
def test_map_types_from_btf_and_legacy_definitions(gadget_objects: dict[str, Path], gadget: str,
                                                   maps: list[dict[str, str]]) -> None:
    assert analyze(gadget_objects[gadget])["ebpf.maps"] == maps


def test_graphs_equal_igs_own_golden_output(gadget_objects: dict[str, Path]) -> None:
    """Expected text copied from IG's gadgets/ci/image_inspect unit test (same program/map shape)."""
    info = analyze(gadget_objects["image_inspect"])
    assert info["ebpf.flowchart"] == (
        'flowchart LR\nmap1[("map1")]\nmap2[("map2")]\nconsume_skb -- "Lookup+Delete" --> map2\n'
        'consume_skb["consume_skb"]\nkfree_skb["kfree_skb"]\nqdisc_dequeue -- "Lookup+Update" --> map1\n'
        'qdisc_dequeue["qdisc_dequeue"]\nqdisc_enqueue -- "Update" --> map2\nqdisc_enqueue["qdisc_enqueue"]\n')
    assert info["ebpf.sequence"] == (
        "sequenceDiagram\nbox eBPF Programs\nparticipant consume_skb\nparticipant kfree_skb\n"
        "participant qdisc_dequeue\nparticipant qdisc_enqueue\nend\nbox eBPF Maps\nparticipant map2\n"
        "participant map1\nend\nconsume_skb->>map2: Lookup\nconsume_skb->>map2: Delete\n"
        "qdisc_dequeue->>map1: Lookup\nqdisc_dequeue->>map1: Update\nqdisc_enqueue->>map2: Update\n")
    assert info["ebpf.maps"] == [{"Name": "map1", "Type": "Hash"}, {"Name": "map2", "Type": "Hash"}]
    assert sorted(programs_by_section(info)) == ["program1", "program2", "program3", "program4"]
    variables = info["ebpf.variables"]
    assert isinstance(variables, list)
    # The function-static initial_hist is LOCAL and must not be reported.
    assert [v["Name"] for v in variables] == ["gadget_mapiter_qdisc___map1", "gadget_param_ifindex",
                                              "gadget_param_targ_ms", "ifindex", "targ_ms"]


def test_perf_output_and_three_way_merge_in_flowchart(gadget_objects: dict[str, Path]) -> None:
    assert analyze(gadget_objects["perf_lru"])["ebpf.flowchart"] == (
        'flowchart LR\nperf_events[("perf_events")]\nrecent[("recent")]\n'
        'on_switch -- "Lookup+Update" --> recent\non_switch -- "EventOutput" --> perf_events\n'
        'on_switch["on_switch"]\n')
    flowchart = analyze(gadget_objects["hash_array"])["ebpf.flowchart"]
    assert isinstance(flowchart, str)
    assert 'count_open -- "Lookup+Update+Delete" --> counts\n' in flowchart
    assert '.data[(".data")]\n' in flowchart and ".rodata" not in flowchart and ".bss" not in flowchart


def test_bpf_to_bpf_calls_are_flattened_breadth_first(gadget_objects: dict[str, Path]) -> None:
    info = analyze(gadget_objects["lsm_subprog"])
    (program,) = programs_by_section(info)["lsm/file_open"]
    source = program["Source"]
    labels = [line[:-1] for line in source.splitlines() if not line.startswith("\t")]
    # Own code first, then the sorted direct callees, then callees of callees not yet linked.
    assert labels == ["check_open", "add_step", "is_denied", "record_denial"]
    assert "\tCall -1 <record_denial>\n" not in source  # numbered lines only
    assert re.search(r"^\t *\d+: Call -1 <record_denial>$", source, re.MULTILINE)
    assert re.search(r"^\t *\d+: LdImmDW dst: r2 imm: -1 <add_step>$", source, re.MULTILINE)
    assert re.search(r"^\t *\d+: Call FnLoop$", source, re.MULTILINE)
    offsets = [int(match) for match in re.findall(r"^\t *(\d+): ", source, re.MULTILINE)]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert all(not section.startswith(".text") for section in programs_by_section(info))
    # Subprograms in .text are not programs of their own.
    programs = info["ebpf.programs"]
    assert isinstance(programs, list) and len(programs) == 1


def test_core_relocation_and_source_lines_in_source_with_relocation(gadget_objects: dict[str, Path]) -> None:
    (program,) = programs_by_section(analyze(gadget_objects["core_read"]))["kprobe/wake_up_new_task"]
    with_relocations = program["SourceWithRelocation"].splitlines()
    relocation = next(i for i, line in enumerate(with_relocations) if line.startswith("; CORERelocation("))
    assert re.fullmatch(r'; CORERelocation\(byte_off, Struct:"fake_task"\[0:1\], local_id=\d+\)',
                        with_relocations[relocation])
    # The relocated instruction loads the field offset of fake_task.tgid (4) as an immediate.
    assert with_relocations[relocation + 1] == "MovImm dst: r1 imm: 4"
    assert "; \tbpf_probe_read_kernel(&tgid, sizeof(tgid), &task->tgid);" in with_relocations
    assert program["Source"].startswith("on_new_task:\n\t  ; int on_new_task(struct fake_task *task)\n\t 0: ")
    assert "CORERelocation" not in program["Source"]


def test_two_programs_in_one_section_and_legacy_map_reference(gadget_objects: dict[str, Path]) -> None:
    info = analyze(gadget_objects["legacy_printk"])
    programs = programs_by_section(info)["kprobe/vfs_read"]
    assert [program["Source"].split(":", 1)[0] for program in programs] == ["on_read", "on_read_again"]
    assert "LoadMapValue dst: r1, fd: 0 off: 0 <.data.counters>" in programs[0]["Source"]
    assert "LoadMapPtr dst: r1 fd: 0 <old_style>" in programs[1]["Source"]
    assert info["ebpf.variables"] == [{"Name": "hits", "Offset": 0, "Size": 8, "Map": ".data.counters"}]


def test_kfunc_ksym_and_kconfig_externs(gadget_objects: dict[str, Path]) -> None:
    info = analyze(gadget_objects["externs"])
    (program,) = programs_by_section(info)["kprobe/do_nanosleep"]
    numbered = [line.split(": ", 1)[1] for line in program["Source"].splitlines() if re.match(r"^\t *\d+: ", line)]
    assert "Call Kfunc(-1) <gadget_test_kfunc>" in numbered
    assert "LdImmDW dst: r3 imm: 0 <gadget_test_ksym_var>" in numbered
    # A kconfig load becomes a map value load with no reference: cilium returns before tagging it.
    assert "LoadMapValue dst: r1, fd: 0 off: 0" in numbered
    # .kconfig and .ksyms are virtual: neither is a map, and there are no variables.
    assert info["ebpf.maps"] is None and info["ebpf.variables"] is None


def test_map_type_names_follow_cilium_stringer() -> None:
    assert [map_type_name(t) for t in (0, 6, 10, 27, 31, 33, 34)] == [
        "UnspecifiedMap", "PerCPUArray", "LRUCPUHash", "RingBuf", "UserRingbuf", "Arena", "MapType(34)"]
    assert MapSpec("my-map:v2", 1).name == "mymapv2"


def test_empty_lists_are_null_like_nil_go_slices(gadget_objects: dict[str, Path]) -> None:
    info = analyze_ebpf(gadget_objects["perf_lru"].read_bytes())
    assert info["ebpf.variables"][1] == b"null"


DEMO_OPENAT_NR = {"amd64": 257, "arm64": 56}
"""openat's syscall number, which ``count_openat`` compares with (the one difference between the arches)."""
DEMO_FLOWCHART = """flowchart LR
events[("events")]
openat_calls[("openat_calls")]
count_openat -- "Lookup" --> openat_calls
count_openat["count_openat"]
trace_demo_openat["trace_demo_openat"]
"""
"""As ig's ebpf2graph draws it: ring buffer helpers are no map access, so trace_demo_openat has no edge."""


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_trace_demo_layers(demo_elves: dict[str, bytes], arch: str) -> None:
    info = {key: content for key, (_, content) in analyze_ebpf(demo_elves[arch]).items()}
    assert json.loads(info["ebpf.maps"]) == [{"Name": "events", "Type": "RingBuf"},
                                             {"Name": "openat_calls", "Type": "PerCPUArray"}]
    assert info["ebpf.flowchart"].decode() == DEMO_FLOWCHART
    programs = {p["Section"]: p for p in json.loads(info["ebpf.programs"])}
    assert sorted(programs) == ["tracepoint/raw_syscalls/sys_enter", "tracepoint/syscalls/sys_enter_openat"]
    trace = programs["tracepoint/syscalls/sys_enter_openat"]["Source"]
    assert trace.startswith("trace_demo_openat:\n")
    assert re.search(r"^\t *\d+: LoadMapPtr dst: r1 fd: 0 <events>$", trace, re.MULTILINE)
    assert re.search(r"^\t *\d+: Call FnRingbufReserve$", trace, re.MULTILINE)
    assert re.search(r"^\t *\d+: Call FnRingbufSubmit$", trace, re.MULTILINE)
    assert re.search(r"^\t *\d+: LoadMapValue dst: r\d, fd: 0 off: 0 <\.rodata>$", trace, re.MULTILINE), "targ_pid"
    count = programs["tracepoint/raw_syscalls/sys_enter"]["Source"]
    assert count.startswith("count_openat:\n")
    assert re.search(rf"^\t *\d+: JNEImm dst: r\d off: \d+ imm: {DEMO_OPENAT_NR[arch]}$", count, re.MULTILINE)
    assert re.search(r"^\t *\d+: LoadMapPtr dst: r1 fd: 0 <openat_calls>$", count, re.MULTILINE)
    variables = {v["Name"]: (v["Map"], v["Size"]) for v in json.loads(info["ebpf.variables"])}
    assert variables == {"targ_pid": (".rodata", 4), "gadget_param_targ_pid": (".bss", 8),
                         "gadget_tracer_open___events___event": (".bss", 8), "__demo_tracer_type_open": (".bss", 8)}


def test_trace_demo_architectures_differ_only_in_the_syscall_number(demo_elves: dict[str, bytes]) -> None:
    amd64, arm64 = (analyze_ebpf(demo_elves[arch]) for arch in ("amd64", "arm64"))
    assert demo_elves["amd64"] != demo_elves["arm64"]
    for key in ("ebpf.sections", "ebpf.maps", "ebpf.variables", "ebpf.flowchart", "ebpf.sequence"):
        assert amd64[key] == arm64[key], key
    nr = {arch: f"imm: {number}\\n".encode() for arch, number in DEMO_OPENAT_NR.items()}
    assert amd64["ebpf.programs"][1].count(nr["amd64"]) == 2, "in Source and SourceWithRelocation"
    assert amd64["ebpf.programs"][1].replace(nr["amd64"], nr["arm64"]) == arm64["ebpf.programs"][1]


TRACE_OPEN_MAPS = [{"Name": "events", "Type": "RingBuf"}, {"Name": "gadget_heap", "Type": "PerCPUArray"},
                   {"Name": "gadget_mntns_filter_map", "Type": "Hash"}, {"Name": "start", "Type": "Hash"}]
TRACE_OPEN_FLOWCHART = """flowchart LR
events[("events")]
gadget_heap[("gadget_heap")]
gadget_mntns_filter_map[("gadget_mntns_filter_map")]
start[("start")]
ig_open_e -- "Lookup" --> gadget_mntns_filter_map
ig_open_e -- "Update" --> start
ig_open_e["ig_open_e"]
ig_open_x -- "Lookup+Delete" --> start
ig_open_x -- "Lookup" --> gadget_heap
ig_open_x -- "EventOutput" --> events
ig_open_x["ig_open_x"]
ig_openat_e -- "Lookup" --> gadget_mntns_filter_map
ig_openat_e -- "Update" --> start
ig_openat_e["ig_openat_e"]
ig_openat_x -- "Lookup+Delete" --> start
ig_openat_x -- "Lookup" --> gadget_heap
ig_openat_x -- "EventOutput" --> events
ig_openat_x["ig_openat_x"]
"""


def _without_open_programs(text: str) -> str:
    """arm64 has no open(2) syscall, so its layer only carries the openat programs."""
    return "".join(line + "\n" for line in text.splitlines() if not re.search(r"\big_open_[ex]\b", line))


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_trace_open_layers(trace_open_elves: dict[str, bytes], arch: str) -> None:
    info = {key: content for key, (_, content) in analyze_ebpf(trace_open_elves[arch]).items()}
    assert json.loads(info["ebpf.maps"]) == TRACE_OPEN_MAPS
    expected_flowchart = TRACE_OPEN_FLOWCHART if arch == "amd64" else _without_open_programs(TRACE_OPEN_FLOWCHART)
    assert info["ebpf.flowchart"].decode() == expected_flowchart
    programs = json.loads(info["ebpf.programs"])
    sections = ["tracepoint/syscalls/sys_enter_openat", "tracepoint/syscalls/sys_exit_openat"]
    if arch == "amd64":
        sections += ["tracepoint/syscalls/sys_enter_open", "tracepoint/syscalls/sys_exit_open"]
    assert sorted(program["Section"] for program in programs) == sorted(sections)
    exit_openat = next(p for p in programs if p["Section"] == "tracepoint/syscalls/sys_exit_openat")
    assert exit_openat["Source"].startswith("ig_openat_x:\n")
    assert re.search(r"^\t *\d+: LoadMapPtr dst: r1 fd: 0 <events>$", exit_openat["Source"], re.MULTILINE)
    assert re.search(r"^\t *\d+: Call FnRingbufReserve$", exit_openat["Source"], re.MULTILINE)
    assert "LoadMapValue dst: r1, fd: 0 off: 8 \\u003c.rodata\\u003e" in info["ebpf.programs"].decode()
    variables = {v["Name"]: (v["Map"], v["Offset"], v["Size"]) for v in json.loads(info["ebpf.variables"])}
    assert variables["targ_tgid"] == (".rodata", 8, 4)
    assert variables["gadget_param_targ_uid"] == (".bss", 8, 8)
    assert "gadget_reserve_buf.zero" not in variables  # LOCAL
    assert len(variables) == 11


def test_trace_open_architectures_share_maps_and_variables(trace_open_elves: dict[str, bytes]) -> None:
    amd64, arm64 = (analyze_ebpf(trace_open_elves[arch]) for arch in ("amd64", "arm64"))
    for key in ("ebpf.maps", "ebpf.variables"):
        assert amd64[key] == arm64[key], key
    for key in ("ebpf.flowchart", "ebpf.sequence"):
        assert _without_open_programs(amd64[key][1].decode()) == arm64[key][1].decode()


def test_trace_open_analysis_is_fast(trace_open_elves: dict[str, bytes]) -> None:
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        analyze_ebpf(trace_open_elves["amd64"])
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.1, timings
