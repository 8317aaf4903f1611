"""``--show-datasources`` of ig's own gadgets, compiled from an ig checkout as ig's builder compiles them.

    make test-ig-datasources IG_SOURCE=~/inspektor-gadget [IG_LIBBPF_HEADERS=DIR] [IG_CLANG=clang-14]

Runs with the rest of ``tests_ig`` (``make test-ig-gadgets``), outside the default suite. Gadgets
are compiled with ig's own clang command (tests_ig/oracle.py ``ig_clang_command``, by default with
clang-19, which needs libbpf >= 1.2 headers: ``IG_LIBBPF_HEADERS``; clang-14 builds these gadgets
with the installed libbpf 1.1). There is no running ig here, so the expected lists come from
reading ig's operators at aeac857bd979 (the rules and the file each follows are in
engine/analysis/operator_rules.py) together with each gadget's program.bpf.c and gadget.yaml; one
list, advise_seccomp's, is printed by ig itself in docs/reference/images.md. Fields a gadget's wasm
module adds (trace_dns, trace_exec, ...) are not part of these lists.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gadgetstore.engine.analysis.datasources import gadget_datasources
from gadgetstore.engine.analysis.dsmodel import FLAG_HAS_PARENT, FLAG_HIDDEN, FLAG_STATIC_MEMBER
from gadgetstore.engine.toolchain import find_clang
from tests_ig.oracle import ig_clang_command, run

IG_SOURCE = Path(os.environ.get("IG_SOURCE", ".")).resolve()
LIBBPF = Path(os.environ["IG_LIBBPF_HEADERS"]).resolve() if os.environ.get("IG_LIBBPF_HEADERS") else None
pytestmark = pytest.mark.skipif(not os.environ.get("IG_SOURCE"), reason="IG_SOURCE names no ig checkout")

# compat.WrapAccessors: the k8s and runtime groups localmanager adds to a source with a mount or
# network namespace field; shortened to one item in the lists below.
ENRICHMENT = ["k8s", "k8s.node", "k8s.namespace", "k8s.podName", "k8s.containerName", "k8s.hostnetwork",
              "k8s.podLabels", "k8s.owner", "k8s.owner.kind", "k8s.owner.name", "runtime", "runtime.containerName",
              "runtime.runtimeName", "runtime.containerId", "runtime.containerPid", "runtime.containerImageName",
              "runtime.containerImageDigest", "runtime.containerStartedAt"]
ENRICHED = "<k8s and runtime>"
PROCESS_NAMES = ["proc.creds.user", "proc.creds.group"]  # gadget_process: uid and gid, no _raw suffix

# gadget, data source, the fields ig's operators add after the struct's own (in order), and which
# of those added fields are hidden (enrichment aside: k8s hidden, runtime as its templates say).
ADDED: list[tuple[str, str, list[str], list[str]]] = [
    # timestamp_raw, error_raw, flags_raw, mode_raw are typed: formatters add timestamp (hidden by its
    # template), error, mode, flags (gadget.yaml hides it); ustack gets its three sub-fields.
    ("trace_open", "open",
     [ENRICHED, "error", "timestamp", "mode", "flags", *PROCESS_NAMES, "ustack.addresses", "ustack.buildid",
      "ustack.symbols"],
     ["timestamp", "flags", *PROCESS_NAMES, "ustack.addresses", "ustack.buildid", "ustack.symbols"]),
    # loginuid is a gadget_uid whose gadget.yaml names its target: loginuser.
    ("trace_exec", "exec", [ENRICHED, "error", "timestamp", "proc.creds.user", "loginuser", "proc.creds.group"],
     ["timestamp", "proc.creds.user", "loginuser", "proc.creds.group"]),
    # type_raw is an enum: "type" comes from the ebpf operator, before enrichment; src and dst are
    # gadget_l4endpoint_t: addr, proto, endpoint each.
    ("trace_tcp", "tracetcp",
     ["type", ENRICHED, "error", "timestamp", "src.addr", "src.proto", "src.endpoint", "dst.addr", "dst.proto",
      "dst.endpoint", *PROCESS_NAMES],
     ["timestamp", "src.addr", "src.proto", "src.endpoint", "dst.addr", "dst.proto", "dst.endpoint",
      *PROCESS_NAMES]),
    # A map iterator: enum t_raw gives "t"; rbytes_raw and wbytes_raw are gadget_bytes.
    ("top_file", "file", ["t", ENRICHED, "rbytes", "wbytes", *PROCESS_NAMES], PROCESS_NAMES),
    # An iterator over struct gadget_process itself: its members are top-level fields.
    ("snapshot_process", "processes", [ENRICHED, "creds.user", "creds.group"], ["creds.user", "creds.group"]),
    # gadget.yaml sets ebpf.rest.name (data, a Bytes field, first of all); pkt_type_raw is an enum,
    # latency_ns_raw a gadget_duration, nameserver an L3 endpoint.
    ("trace_dns", "dns",
     ["data", "pkt_type", ENRICHED, "timestamp", "latency_ns", "nameserver.addr", "src.addr", "src.proto",
      "src.endpoint", "dst.addr", "dst.proto", "dst.endpoint", *PROCESS_NAMES],
     ["data", "pkt_type", "timestamp", "nameserver.addr", "src.addr", "src.proto", "src.endpoint", "dst.addr",
      "dst.proto", "dst.endpoint", *PROCESS_NAMES]),
    # kern_stack_raw is a gadget_kernel_stack; user_stack_raw a gadget_user_stack.
    ("profile_cpu", "samples",
     ["kern_stack", ENRICHED, *PROCESS_NAMES, "user_stack_raw.addresses", "user_stack_raw.buildid",
      "user_stack_raw.symbols"],
     [*PROCESS_NAMES, "user_stack_raw.addresses", "user_stack_raw.buildid", "user_stack_raw.symbols"]),
    # sig_raw is a gadget_signal.
    ("trace_signal", "signal", [ENRICHED, "sig", "error", "timestamp", *PROCESS_NAMES],
     ["timestamp", *PROCESS_NAMES]),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], bytes]:
    """The object of a gadget for an arch, compiled once by ig's clang command (IG_CLANG, default clang-19)."""
    clang = find_clang(os.environ.get("IG_CLANG", "clang-19")).path
    out = tmp_path_factory.mktemp("ig-gadgets")
    objects: dict[tuple[str, str], bytes] = {}

    def get(gadget: str, arch: str = "amd64") -> bytes:
        if (gadget, arch) not in objects:
            target = out / f"{gadget}_{arch}.o"
            compiled = run(ig_clang_command(clang, IG_SOURCE, arch, target, LIBBPF), cwd=IG_SOURCE / "gadgets" / gadget)
            if compiled.returncode != 0:
                first = next((line for line in compiled.stderr.splitlines() if "error" in line), compiled.stderr[-300:])
                pytest.skip(f"{clang} cannot compile {gadget} for {arch}: {first.strip()} (clang >= 16 needs "
                            f"IG_LIBBPF_HEADERS naming libbpf >= 1.2 headers; or IG_CLANG=clang-14)")
            objects[gadget, arch] = target.read_bytes()
        return objects[gadget, arch]

    return get


def _metadata(gadget: str) -> Any:
    return yaml.safe_load((IG_SOURCE / "gadgets" / gadget / "gadget.yaml").read_bytes())


def _source(sources: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [source for source in sources if source["name"] == name]
    return found


def _collapse(names: list[str]) -> list[str]:
    """The enrichment group as one item, where it stands."""
    if "k8s" not in names:
        return names
    start = names.index("k8s")
    assert names[start:start + len(ENRICHMENT)] == ENRICHMENT
    return [*names[:start], ENRICHED, *names[start + len(ENRICHMENT):]]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
@pytest.mark.parametrize(("gadget", "name", "added", "hidden"), ADDED, ids=[row[0] for row in ADDED])
def test_operators_add_the_fields_ig_adds(built: Callable[[str, str], bytes], gadget: str, name: str,
                                          added: list[str], hidden: list[str], arch: str) -> None:
    source = _source(gadget_datasources(_metadata(gadget), built(gadget, arch)), name)
    fields = source["fields"]
    static = [f for f in fields if f.get("flags", 0) & FLAG_STATIC_MEMBER]
    assert fields[:len(static)] == static, "the struct's fields come first"
    rest = fields[len(static):]
    assert _collapse([f["fullName"] for f in rest]) == added
    shown = [f["fullName"] for f in rest if f.get("flags", 0) & FLAG_HIDDEN and not f["fullName"].startswith(
        ("k8s", "runtime"))]
    assert shown == hidden
    assert [f.get("index", 0) for f in fields] == list(range(len(fields)))
    for entry in rest:
        if entry.get("flags", 0) & FLAG_HAS_PARENT:
            assert fields[entry["parent"]]["fullName"] + "." + entry["name"] == entry["fullName"]


def _bpftool_members(elf: bytes, struct: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "object.o"
    path.write_bytes(elf)
    dumped = run(["bpftool", "-j", "btf", "dump", "file", str(path)])
    assert dumped.returncode == 0, dumped.stderr
    types = json.loads(dumped.stdout)["types"]
    (found,) = [t for t in types if t["kind"] == "STRUCT" and t["name"] == struct]
    return [member["name"] for member in found["members"] if not member["name"].startswith("__")]


@pytest.mark.parametrize(("gadget", "name", "struct"), [
    ("trace_open", "open", "event"), ("trace_exec", "exec", "event"), ("trace_tcp", "tracetcp", "event"),
    ("trace_dns", "dns", "event_t"), ("snapshot_process", "processes", "gadget_process"),
])
def test_top_level_fields_are_the_struct_members_bpftool_reads(built: Callable[[str, str], bytes], gadget: str,
                                                               name: str, struct: str, tmp_path: Path) -> None:
    elf = built(gadget, "amd64")
    source = _source(gadget_datasources(_metadata(gadget), elf), name)
    top_level = [f["name"] for f in source["fields"]
                 if f.get("flags", 0) & FLAG_STATIC_MEMBER and not f.get("flags", 0) & FLAG_HAS_PARENT]
    assert top_level == _bpftool_members(elf, struct, tmp_path)


def test_advise_seccomp_lists_what_ig_prints_in_its_docs(built: Callable[[str, str], bytes]) -> None:
    """docs/reference/images.md shows ``ig image inspect advise_seccomp --show-datasources`` field names."""
    docs = (IG_SOURCE / "docs" / "reference" / "images.md").read_text()
    shown = re.search(r"--show-datasources --jsonpath='\[0\]\.fields\[\*\]\.fullName'\n(\[.*?\])\n", docs, re.S)
    assert shown is not None, "the example is no longer in ig's docs"
    source = _source(gadget_datasources(_metadata("advise_seccomp"), built("advise_seccomp", "amd64")), "syscalls")
    assert [f["fullName"] for f in source["fields"]] == json.loads(shown.group(1))


@pytest.mark.parametrize(("gadget", "name", "first", "count"), [
    # pid, the 15 names of the default list (startTime and cpuTime add two fields each), mountnsid.
    ("top_process", "processes", ["pid", "ppid", "comm"], 1 + 17 + 1 + len(ENRICHMENT) + 3),
    ("top_cpu_throttle", "cgroups", ["cgroupPath", "nrPeriods", "nrThrottled"], 11 + len(ENRICHMENT) + 3),
    ("bpfstats", "bpfstats", ["gadgetID", "gadgetName", "gadgetImage"], 15 + 2),
])
def test_metadata_only_gadgets_list_their_operator_source(gadget: str, name: str, first: list[str],
                                                          count: int) -> None:
    """process.go, cgroup.go and ebpf/stats.go create these from gadget.yaml's ``operator:`` settings;
    the formatters add a string beside each ``_raw`` bytes or duration field."""
    (source,) = gadget_datasources(_metadata(gadget), None)
    assert source["name"] == name and [f["fullName"] for f in source["fields"]][:3] == first
    assert len(source["fields"]) == count
