"""``--show-datasources`` of ig's own gadgets, compiled from an ig checkout as ig's builder compiles them.

    IG_SOURCE=~/inspektor-gadget make test-ig-datasources      (CLANG=clang-19 to pick the compiler)

Outside the default suite: it needs an inspektor-gadget checkout (``IG_SOURCE``) and compiles its
gadgets (``clang -target bpf -Wall -g -O2 -D __TARGET_ARCH_<arch> -I <ig>/include/
-I <ig>/include/gadget/<arch>/``, cmd/common/image/build-step.go). There is no running ig here, so
the expected lists come from reading ig's operators at aeac857bd979 (the rules and the file each
follows are in engine/analysis/operator_rules.py) together with each gadget's program.bpf.c and
gadget.yaml; one list, advise_seccomp's, is printed by ig itself in docs/reference/images.md.
Fields a gadget's wasm module adds (trace_dns, trace_exec, ...) are not part of these lists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gadgetstore.engine.analysis.datasources import gadget_datasources
from gadgetstore.engine.analysis.dsmodel import FLAG_HAS_PARENT, FLAG_HIDDEN, FLAG_STATIC_MEMBER

IG_SOURCE = Path(os.environ["IG_SOURCE"]).expanduser() if os.environ.get("IG_SOURCE") else None
CLANG = os.environ.get("CLANG", "clang")
pytestmark = pytest.mark.skipif(IG_SOURCE is None, reason="IG_SOURCE does not name an inspektor-gadget checkout")

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


def _compile(gadget: str, arch: str, out: Path) -> bytes:
    assert IG_SOURCE is not None
    macro = {"amd64": "x86", "arm64": "arm64"}[arch]
    target = out / f"{gadget}_{arch}.o"
    subprocess.run([CLANG, "-target", "bpf", "-Wall", "-g", "-O2", "-I/usr/include/x86_64-linux-gnu",
                    "-D", f"__TARGET_ARCH_{macro}", "-I", f"{IG_SOURCE}/include/",
                    "-I", f"{IG_SOURCE}/include/gadget/{arch}/", "-c", "program.bpf.c", "-o", str(target)],
                   cwd=IG_SOURCE / "gadgets" / gadget, check=True, capture_output=True)
    return target.read_bytes()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], bytes]:
    out = tmp_path_factory.mktemp("ig-gadgets")
    objects: dict[tuple[str, str], bytes] = {}

    def get(gadget: str, arch: str = "amd64") -> bytes:
        if (gadget, arch) not in objects:
            objects[gadget, arch] = _compile(gadget, arch, out)
        return objects[gadget, arch]

    return get


def _metadata(gadget: str) -> Any:
    assert IG_SOURCE is not None
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
    types = json.loads(subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(path)], check=True,
                                      capture_output=True, text=True).stdout)["types"]
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
    assert IG_SOURCE is not None
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
