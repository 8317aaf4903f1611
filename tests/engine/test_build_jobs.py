"""The build's commands with fake tools: both arches at once, which failure is reported, Go and Rust
wasm modules built with ig's commands and packaged, and the compilers recorded in the image."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.build import BuildRequest, build_image, compile_gadget
from gadgetstore.engine.buildspec import ANNOTATION_EBPF_COMPILER, ANNOTATION_WASM_COMPILER, BuildError
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store
from tests.support.fake_tools import WASM_BYTES, fake_clang, fake_go, fake_rust, fake_strip, recorded_runs

SOURCE = "int x;\n"  # the fake clang does not read it
GADGET_YAML = b"name: jobs\n"


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory for fake tools, first in PATH (the fakes need only /bin's sh, printf, mkdir, timeout)."""
    directory = tmp_path / "tools"
    directory.mkdir()
    monkeypatch.setenv("PATH", os.pathsep.join([str(directory), "/usr/bin", "/bin"]))
    return directory


def make_gadget(root: Path, metadata: bytes | None = GADGET_YAML, build_yaml: str | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "program.bpf.c").write_text(SOURCE)
    if metadata is not None:
        (root / "gadget.yaml").write_bytes(metadata)
    if build_yaml is not None:
        (root / "build.yaml").write_text(build_yaml)
    return root


def read_json(store: Store, digest: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(store.blobs.read(Digest.parse(digest)))
    return data


def manifests(store: Store, index_digest: str) -> dict[str, dict[str, Any]]:
    index = read_json(store, index_digest)
    return {entry["platform"]["architecture"]: read_json(store, entry["digest"]) for entry in index["manifests"]}


def test_both_arches_compile_at_the_same_time(tmp_path: Path, tools: Path) -> None:
    """Each compile blocks until the other has started: opening a FIFO waits for its other end."""
    fifo = tmp_path / "rendezvous"
    os.mkfifo(fifo)
    record = tmp_path / "record"
    clang = fake_clang(tools, record, before_output=f"""
case "$arch" in
  x86) timeout --foreground 10 sh -c 'echo amd64 > "$0"' {fifo} || {{ echo "arm64 never started" >&2; exit 3; }};;
  arm64) timeout --foreground 10 cat {fifo} > /dev/null || {{ echo "amd64 never started" >&2; exit 3; }};;
esac
""")
    fake_strip(tools, record)
    compiled = compile_gadget(BuildRequest(make_gadget(tmp_path / "g"), clang=str(clang)))
    assert {arch: layers.ebpf for arch, layers in compiled.layers.items()} == {
        "amd64": b"fake-object for x86", "arm64": b"fake-object for arm64"
    }
    strips = recorded_runs(record, "strip")
    assert sorted(run.argv[0] for run in strips) == ["-g", "-g"] and len(strips) == 2


def test_an_arm64_failure_is_reported_when_amd64_compiles(tmp_path: Path, tools: Path) -> None:
    record = tmp_path / "record"
    clang = fake_clang(tools, record, before_output='[ "$arch" = arm64 ] && { echo "error: arm64 only" >&2; exit 1; }')
    fake_strip(tools, record)
    with pytest.raises(BuildError) as error:
        compile_gadget(BuildRequest(make_gadget(tmp_path / "g"), clang=str(clang)))
    assert str(error.value) == "clang compile for arm64 failed (exit status 1):\nerror: arm64 only"


def test_a_failed_compile_stops_the_wasm_build_beside_it(tmp_path: Path, tools: Path) -> None:
    """amd64 fails once the Go build is running; that build is killed, not waited for."""
    started, never = tmp_path / "go-started", tmp_path / "never-written"
    os.mkfifo(started)
    os.mkfifo(never)
    record = tmp_path / "record"
    clang = fake_clang(tools, record, before_output=f"""
if [ "$arch" = x86 ]; then timeout --foreground 10 cat {started} > /dev/null; echo "error: amd64 broke" >&2; exit 1; fi
""")
    fake_strip(tools, record)
    go = fake_go(tools, record, before_output=f"echo $$ > {tmp_path / 'go.pid'}; echo up > {started}; "
                                              f"timeout --foreground 60 cat {never}")
    gadget = make_gadget(tmp_path / "g", build_yaml="wasm: go/program.go\n")
    (gadget / "go").mkdir()
    (gadget / "go" / "program.go").write_text("package main\n")
    begin = time.monotonic()
    with pytest.raises(BuildError) as error:
        compile_gadget(BuildRequest(gadget, clang=str(clang), go=str(go)))
    assert str(error.value) == "clang compile for amd64 failed (exit status 1):\nerror: amd64 broke"
    assert time.monotonic() - begin < 30  # the fake go would have blocked for 60 s
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "go.pid").read_text()), 0)


def test_go_module_is_built_with_igs_command_and_packaged(tmp_path: Path, tools: Path, store_root: Path) -> None:
    record = tmp_path / "record"
    clang = fake_clang(tools, record)
    fake_strip(tools, record)
    go = fake_go(tools, record, "go1.26.0")
    gadget = make_gadget(tmp_path / "g", build_yaml="wasm: go/program.go\n")
    (gadget / "go").mkdir()
    (gadget / "go" / "program.go").write_text("package main\n")
    (gadget / "go" / "go.mod").write_text("module main\n\ngo 1.24 // wasmexport\n")
    out = tmp_path / "out"
    request = BuildRequest(gadget, output_dir=out, source_date_epoch="0", clang=str(clang), go=str(go))
    built = build_image(lambda: Store.open(store_root), request, "wasm:v1")

    [run] = recorded_runs(record, "go")
    assert run.argv == ["build", "-C", "go", "-o", str(out.resolve() / "program.wasm"), "-buildmode=c-shared",
                        "-ldflags", "-w -s", "program.go"]
    assert run.env == {"cwd": str(gadget.resolve()), "CGO_ENABLED": "0", "GOOS": "wasip1", "GOARCH": "wasm",
                       "GOTOOLCHAIN": "local", "CARGO_TARGET_DIR": "unset"}
    store = Store.open(store_root)
    for arch, manifest in manifests(store, str(built.descriptor.digest)).items():
        assert [layer["mediaType"] for layer in manifest["layers"]] == [mt.GADGET_EBPF, mt.GADGET_WASM], arch
        assert manifest["layers"][1]["digest"] == str(Digest.of_bytes(WASM_BYTES))
        assert manifest["annotations"][ANNOTATION_WASM_COMPILER] == "go1.26.0"
        assert manifest["annotations"][ANNOTATION_EBPF_COMPILER] == "fakevendor clang version 19.1.7 (fake)"


def test_go_older_than_go_mod_stops_the_build_before_clang(tmp_path: Path, tools: Path) -> None:
    record = tmp_path / "record"
    clang = fake_clang(tools, record)
    fake_strip(tools, record)
    go = fake_go(tools, record, "go1.22.5")
    gadget = make_gadget(tmp_path / "g", build_yaml="wasm: go/program.go\n")
    (gadget / "go").mkdir()
    (gadget / "go" / "program.go").write_text("package main\n")
    (gadget / "go.mod").write_text("module example.com/g\n\ngo 1.26.0\n")  # found above go/, as go finds it
    with pytest.raises(BuildError) as error:
        compile_gadget(BuildRequest(gadget, clang=str(clang), go=str(go)))
    assert str(error.value) == (f"wasm go/program.go: {go} is go1.22.5; the module's go.mod needs Go >= 1.26.0 "
                                "(GOTOOLCHAIN=local, as ig's builder; install it or pass --go PATH)")
    assert recorded_runs(record, "clang") == []


def test_rust_crate_is_built_with_igs_command_and_packaged(tmp_path: Path, tools: Path) -> None:
    rust = fake_rust(tools / "rust", tmp_path / "record", "trace-demo")
    gadget = tmp_path / "g"
    (gadget / "rust" / "src").mkdir(parents=True)
    (gadget / "rust" / "src" / "lib.rs").write_text("\n")
    (gadget / "rust" / "Cargo.toml").write_text('[package]\nname = "trace-demo"\nversion = "0.1.0"\n')
    (gadget / "build.yaml").write_text("wasm: rust/src/lib.rs\n")
    out = tmp_path / "out"
    compiled = compile_gadget(BuildRequest(gadget, output_dir=out, cargo=str(rust.cargo)))

    [run] = recorded_runs(tmp_path / "record", "cargo")
    assert run.argv == ["build", "--target", "wasm32-wasip1", "--release", "--manifest-path",
                        str((gadget / "rust" / "Cargo.toml").resolve())]
    assert run.env["CARGO_TARGET_DIR"] == str(out.resolve())
    assert (out / "program.wasm").read_bytes() == WASM_BYTES  # copied there, as ig's builder does
    assert {arch: (layers.ebpf, layers.wasm) for arch, layers in compiled.layers.items()} == {
        "amd64": (None, WASM_BYTES), "arm64": (None, WASM_BYTES)
    }
    assert compiled.tools == {ANNOTATION_WASM_COMPILER: "cargo 1.95.0 (fake 2026-01-01)"}


def test_compiler_annotations_follow_igs_builder_version(tmp_path: Path, tools: Path, store_root: Path) -> None:
    """Only with a gadget.yaml (as ig's builder.version), and gadget.yaml's annotations override them."""
    record = tmp_path / "record"
    clang = fake_clang(tools, record)
    fake_strip(tools, record)

    def annotations(gadget: Path) -> dict[str, str]:
        request = BuildRequest(gadget, source_date_epoch="0", clang=str(clang))
        built = build_image(lambda: Store.open(store_root), request, None)
        found: dict[str, str] = read_json(Store.open(store_root), str(built.descriptor.digest))["annotations"]
        return found

    plain = annotations(make_gadget(tmp_path / "plain"))
    assert plain[ANNOTATION_EBPF_COMPILER] == "fakevendor clang version 19.1.7 (fake)"
    assert plain["io.inspektor-gadget.builder.version"].startswith("gadgetstore ")
    assert annotations(make_gadget(tmp_path / "bare", metadata=None)) == {
        "org.opencontainers.image.created": "1970-01-01T00:00:00Z"
    }
    custom = make_gadget(tmp_path / "custom", metadata=b"name: c\nannotations:\n  "
                                                       b"io.gadgetstore.builder.ebpf-compiler: mine\n")
    assert annotations(custom)[ANNOTATION_EBPF_COMPILER] == "mine"


def test_build_yaml_cflags_never_reach_clang(tmp_path: Path, tools: Path) -> None:
    record = tmp_path / "record"
    clang = fake_clang(tools, record)
    fake_strip(tools, record)
    gadget = make_gadget(tmp_path / "g", build_yaml="cflags: -DEVIL -include /etc/passwd\n")
    log: list[str] = []
    compile_gadget(BuildRequest(gadget, clang=str(clang)), log.append)
    runs = recorded_runs(record, "clang")
    assert len(runs) == 2
    assert not any("EVIL" in arg or arg == "/etc/passwd" for run in runs for arg in run.argv)
    assert "build.yaml: 'cflags' is ignored (ig's build.yaml has only ebpfsource, wasm and metadata)" in log
