"""The generated text of the view: readable extra-info, program listings, times, the README."""

from __future__ import annotations

import json

import pytest

from gadgetstore.cli.inspect_cmd import decode_value, render
from gadgetstore.engine.analysis.extrainfo import go_json
from gadgetstore.fusefs.textfiles import extra_info_files, program_files, readable, readme_text, rfc3339_ns

PROGRAMS = go_json([
    {"Section": "tracepoint/syscalls/sys_enter_openat", "Source": "ig_openat_e:\n\t  0: MovImm dst: r0 imm: 0\n"},
    {"Section": "kprobe/do_unlinkat", "Source": "\t  0: Exit"},  # no name line: named after its section
    {"Section": "kprobe/do_unlinkat", "Source": "no label either"},
    {"Section": "x", "Source": "../../etc:\nnope"},  # not a safe name: its section then
    {"Section": "y", "Source": 7},
])


def test_json_is_what_inspect_prints_as_jsonpretty_and_raw_keeps_the_bytes() -> None:
    maps = go_json([{"Name": "events", "Type": "RingBuf"}, {"Name": "<start>", "Type": "Hash"}])
    info = {"ebpf.maps": ("application/json", maps), "oci.tag": ("text/plain", b"v1"),
            "oci.metadata": ("text/yaml", b"name: x\n"), "ebpf.flowchart": ("text/mermaid", b"flowchart LR"),
            "oci.created": ("text/plain", b""), "ebpf.programs": ("application/json", PROGRAMS),
            "bad/key": ("text/plain", b"x")}
    files = extra_info_files(info)
    assert files["ebpf.maps"] == render(decode_value("application/json", maps), "jsonpretty").encode()
    assert files["ebpf.maps"].count(b"\n") == 10 and b"\\u003cstart\\u003e" in files["ebpf.maps"]
    assert files["oci.tag"] == b"v1\n" and files["oci.metadata"] == b"name: x\n"
    assert files["ebpf.flowchart"] == b"flowchart LR\n" and files["oci.created"] == b""
    assert {k: v for k, v in files.items() if k.startswith("raw/")} == {
        f"raw/{key}": content for key, (_t, content) in info.items() if key != "bad/key"}
    assert sorted(k for k in files if k.startswith("programs/")) == [
        "programs/ig_openat_e.txt", "programs/kprobe_do_unlinkat-2.txt", "programs/kprobe_do_unlinkat.txt",
        "programs/x.txt"]
    assert all(v.endswith(b"\n") for k, v in files.items() if not k.startswith("raw/") and v)


def test_program_listings_are_the_source_with_a_final_newline() -> None:
    listings = program_files(PROGRAMS)
    assert listings["ig_openat_e.txt"] == b"ig_openat_e:\n\t  0: MovImm dst: r0 imm: 0\n"
    assert listings["kprobe_do_unlinkat.txt"] == b"\t  0: Exit\n"
    assert program_files(b"not json") == {} and program_files(b'{"a": 1}') == {}


def test_json_that_does_not_parse_is_shown_as_it_is() -> None:
    assert readable("application/json", b"{broken") == b"{broken\n"
    nested = b"[" * 200_000 + b"]" * 200_000  # deeper than the parser goes
    assert readable("application/json", nested) == nested + b"\n"
    assert program_files(nested) == {}
    pretty = readable("application/json", json.dumps({"b": [1, 2], "a": None}).encode())
    # as inspect.go prints it: read into Go maps (keys sorted), numbers as float64
    assert pretty == b'{\n  "a": null,\n  "b": [\n    1,\n    2\n  ]\n}\n'


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-02T03:04:05Z", 1704164645 * 10**9),
    ("2024-01-02T03:04:05.123456789Z", 1704164645 * 10**9 + 123456789),
    ("2024-01-02T03:04:05.5+01:00", 1704161045 * 10**9 + 500000000),
    ("2024-01-02t03:04:05z", 1704164645 * 10**9),
    ("2024-01-02T03:04:05", None),  # no offset: not RFC 3339
    ("1969-12-31T23:59:59Z", None),  # before the epoch: not a file time here
    ("2024-13-02T03:04:05Z", None),
    ("yesterday", None),
    ("", None),
])
def test_rfc3339_times(text: str, expected: int | None) -> None:
    assert rfc3339_ns(text) == expected


def test_readme_names_what_is_there() -> None:
    text = readme_text(["trace_open", "ghcr.io", "localhost:5000"], ["ghcr.io", "localhost:5000"], "arm64",
                       "/var/lib/gadgetstore", pull_on_access=False).decode()
    assert "view of the store /var/lib/gadgetstore\n" in text
    assert "by short name: trace_open\n" in text and "by its full name: ghcr.io, localhost:5000\n" in text
    assert "for this host (arm64)" in text and text.endswith("\n") and "Pull on access" not in text
