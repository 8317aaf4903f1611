"""Building from a gadget directory: source rules, clang for both arches, and what lands in the store."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.build import (
    BuildError,
    BuildRequest,
    build_image,
    clang_command,
    compile_gadget,
    compile_hint,
    find_sources,
)
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.store import Store

HAVE_TOOLCHAIN = (
    shutil.which("clang") is not None
    and shutil.which("llvm-strip") is not None
    and Path("/usr/include/bpf/bpf_helpers.h").is_file()
    and Path("/usr/include/linux/bpf.h").is_file()
)
needs_clang = pytest.mark.skipif(
    not HAVE_TOOLCHAIN, reason="needs clang, llvm and libbpf-dev/linux-libc-dev (apt-get install clang llvm libbpf-dev)"
)

ARCH_MARK_SOURCE = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#if defined(__TARGET_ARCH_x86)
#define ARCH_MARK 0x11111111
#elif defined(__TARGET_ARCH_arm64)
#define ARCH_MARK 0x22222222
#else
#error "no __TARGET_ARCH_* define"
#endif

const volatile __u32 arch_mark = ARCH_MARK;

SEC("tracepoint/syscalls/sys_enter_openat")
int mark(void *ctx)
{
	return arch_mark == 0;
}

char LICENSE[] SEC("license") = "GPL";
"""
BROKEN_SOURCE = "int broken(void) { return undeclared_thing; }\n"
GADGET_YAML = b"name: marker\ndescription: marks the target arch\n"


def make_gadget(root: Path, source: str | None = ARCH_MARK_SOURCE, metadata: bytes | None = GADGET_YAML) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if source is not None:
        (root / "program.bpf.c").write_text(source)
    if metadata is not None:
        (root / "gadget.yaml").write_bytes(metadata)
    return root


def rodata_u32(elf_bytes: bytes) -> int:
    elf = ELFFile(io.BytesIO(elf_bytes))
    section = elf.get_section_by_name(".rodata")
    assert section is not None
    return int.from_bytes(section.data()[:4], "little" if elf.little_endian else "big")


def snapshot(store_root: Path) -> tuple[list[str], bytes]:
    blobs = sorted(str(p.relative_to(store_root)) for p in (store_root / "blobs").rglob("*") if p.is_file())
    return blobs, (store_root / "index.journal").read_bytes()


def read_json(store: Store, digest: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(store.blobs.read(Digest.parse(digest)))
    return data


def layer_of(store: Store, arch: str, index_digest: str) -> bytes:
    index = read_json(store, index_digest)
    entry = next(m for m in index["manifests"] if m["platform"]["architecture"] == arch)
    manifest = read_json(store, entry["digest"])
    assert manifest["layers"][0]["mediaType"] == mt.GADGET_EBPF
    return store.blobs.read(Digest.parse(manifest["layers"][0]["digest"]))


# -- source rules -------------------------------------------------------------------------------


def test_missing_default_source_means_metadata_only(tmp_path: Path) -> None:
    sources = find_sources(BuildRequest(make_gadget(tmp_path / "g", source=None)))
    assert sources.ebpf_source is None
    assert sources.metadata == tmp_path / "g" / "gadget.yaml"


def test_missing_named_source_is_an_error(tmp_path: Path) -> None:
    gadget = make_gadget(tmp_path / "g", source=None)
    (gadget / "build.yaml").write_text("ebpfsource: other.bpf.c\n")
    with pytest.raises(BuildError, match=r"other\.bpf\.c"):
        find_sources(BuildRequest(gadget))


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="at least one of"):
        find_sources(BuildRequest(make_gadget(tmp_path / "g", source=None, metadata=None)))


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="does not exist"):
        find_sources(BuildRequest(tmp_path / "nope"))


@pytest.mark.parametrize(
    ("wasm", "expected"),
    [
        ("go/program.go", "wasm source 'go/program.go' not found in {gadget}"),
        ("rust/src/lib.rs", "wasm source 'rust/src/lib.rs' not found in {gadget}"),
        ("module.wat", "wasm: unsupported wasm file type: 'module.wat' (expected .wasm, .go or .rs)"),
        ("-o/etc/x.go", "wasm '-o/etc/x.go' looks like a compiler flag; flags are not accepted"),
    ],
)
def test_wasm_sources_are_checked_before_any_tool_runs(tmp_path: Path, wasm: str, expected: str) -> None:
    gadget = make_gadget(tmp_path / "g", source=None)
    (gadget / "build.yaml").write_text(f"wasm: {wasm}\n")
    with pytest.raises(BuildError) as error:
        find_sources(BuildRequest(gadget))
    assert str(error.value) == expected.format(gadget=gadget)


def test_go_folder_without_a_wasm_entry_is_refused_clearly(tmp_path: Path) -> None:
    gadget = make_gadget(tmp_path / "g", source=None, metadata=None)
    (gadget / "go").mkdir()
    (gadget / "go" / "program.go").write_text("package main\n")
    with pytest.raises(BuildError, match=r"build\.yaml names no wasm module to build; set 'wasm: go/program\.go'"):
        find_sources(BuildRequest(gadget))


def test_source_that_looks_like_a_flag_is_refused(tmp_path: Path) -> None:
    gadget = make_gadget(tmp_path / "g", source=None)
    (gadget / "-x.c").write_text("int x;\n")
    (gadget / "build.yaml").write_text("ebpfsource: -x.c\n")
    with pytest.raises(BuildError, match="flags are not accepted"):
        find_sources(BuildRequest(gadget))


def test_build_file_from_elsewhere_names_files_relative_to_the_gadget(tmp_path: Path) -> None:
    gadget = make_gadget(tmp_path / "g", source=None, metadata=None)
    (gadget / "meta.yaml").write_bytes(GADGET_YAML)
    (tmp_path / "custom.yaml").write_text("metadata: meta.yaml\n")
    sources = find_sources(BuildRequest(gadget, build_file=tmp_path / "custom.yaml"))
    assert sources.metadata == gadget / "meta.yaml"
    with pytest.raises(BuildError, match="does not exist"):
        find_sources(BuildRequest(gadget, build_file=tmp_path / "absent.yaml"))


def test_build_file_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gadget = make_gadget(tmp_path / "g", source=None, metadata=None)
    (gadget / "meta.yaml").write_bytes(GADGET_YAML)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"metadata: meta.yaml\n")))
    assert find_sources(BuildRequest(gadget, build_file=Path("-"))).metadata == gadget / "meta.yaml"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"[not a mapping")))
    with pytest.raises(BuildError, match=r"^standard input: invalid YAML"):
        find_sources(BuildRequest(gadget, build_file=Path("-")))


def test_clang_command_is_igs(tmp_path: Path) -> None:
    command = clang_command("clang", "program.bpf.c", "arm64", tmp_path / "arm64.bpf.o", (Path("/inc"),))
    assert command[:6] == ["clang", "-target", "bpf", "-Wall", "-g", "-O2"]
    assert command[6].startswith("-I/usr/include/") and command[6].endswith("-linux-gnu")
    assert command[7:] == [
        "-D", "__TARGET_ARCH_arm64", "-c", "program.bpf.c", "-I", "/inc/", "-o", str(tmp_path / "arm64.bpf.o")
    ]


def test_missing_clang_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BuildError) as error:
        compile_gadget(BuildRequest(make_gadget(tmp_path / "g")))
    assert str(error.value) == ("clang not found in PATH (looked for clang-<version> and clang); eBPF programs "
                                "need it (Debian: apt-get install clang-19 llvm-19)")


def test_prebuilt_wasm_goes_into_both_manifests_without_clang(tmp_path: Path, store_root: Path) -> None:
    gadget = make_gadget(tmp_path / "g", source=None)
    (gadget / "mod.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00")
    (gadget / "build.yaml").write_text("wasm: mod.wasm\n")
    built = build_image(lambda: Store.open(store_root), BuildRequest(gadget, source_date_epoch="0"), "w:v1")
    store = Store.open(store_root)
    index = read_json(store, str(built.descriptor.digest))
    assert index["manifests"][0]["digest"] == index["manifests"][1]["digest"]
    manifest = read_json(store, index["manifests"][0]["digest"])
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mt.GADGET_WASM]
    assert manifest["layers"][0]["digest"] == str(Digest.of_bytes(b"\x00asm\x01\x00\x00\x00"))
    assert "io.gadgetstore.builder.ebpf-compiler" not in manifest["annotations"]  # no clang ran
    assert str(built) == f"ghcr.io/inspektor-gadget/gadget/w:v1@{built.descriptor.digest}"


# -- compiling ----------------------------------------------------------------------------------


@needs_clang
def test_each_arch_gets_a_bpf_object_built_for_it(tmp_path: Path, store_root: Path) -> None:
    gadget = make_gadget(tmp_path / "g")
    out = tmp_path / "out"
    request = BuildRequest(gadget, output_dir=out, source_date_epoch="1700000000")
    built = build_image(lambda: Store.open(store_root), request, "marker")
    for arch, mark in (("amd64", 0x11111111), ("arm64", 0x22222222)):
        product = out / f"{arch}.bpf.o"
        header = subprocess.run(["llvm-readelf", "-h", str(product)], capture_output=True, text=True, check=True)
        assert "EM_BPF" in header.stdout
        sections = subprocess.run(["llvm-readelf", "-S", str(product)], capture_output=True, text=True, check=True)
        assert ".debug_info" not in sections.stdout  # llvm-strip -g ran
        assert ".BTF" in sections.stdout
        layer = layer_of(Store.open(store_root), arch, str(built.descriptor.digest))
        assert layer == product.read_bytes()
        assert rodata_u32(layer) == mark


@needs_clang
def test_same_epoch_same_digest_and_another_epoch_another(tmp_path: Path, store_root: Path) -> None:
    gadget = make_gadget(tmp_path / "g")

    def build(epoch: str) -> str:
        request = BuildRequest(gadget, source_date_epoch=epoch)
        return str(build_image(lambda: Store.open(store_root), request, "marker").descriptor.digest)

    first, second, other = build("1700000000"), build("1700000000"), build("1700000001")
    assert first == second
    assert other != first
    index = read_json(Store.open(store_root), first)
    assert index["annotations"]["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"


@needs_clang
def test_compile_error_shows_clang_and_leaves_the_store_alone(tmp_path: Path, store_root: Path) -> None:
    store = Store.open(store_root)
    before = snapshot(store_root)
    gadget = make_gadget(tmp_path / "g", source=BROKEN_SOURCE)
    with pytest.raises(BuildError) as info:
        build_image(lambda: store, BuildRequest(gadget), "broken")
    message = str(info.value)
    assert message.startswith("clang compile for amd64 failed")
    assert "undeclared_thing" in message and "error:" in message
    assert snapshot(store_root) == before
    assert Store.open(store_root).tags() == []


@needs_clang
def test_missing_bpf_header_hints_at_the_package(tmp_path: Path) -> None:
    gadget = make_gadget(tmp_path / "g", source="#include <bpf/not_a_header_anywhere.h>\n")
    with pytest.raises(BuildError, match="hint: install libbpf-dev"):
        compile_gadget(BuildRequest(gadget))


@pytest.mark.parametrize(
    ("clang_output", "hint"),
    [
        ("fatal error: 'bpf/bpf_helpers.h' file not found", "install libbpf-dev"),
        ("fatal error: 'vmlinux.h' file not found", "Inspektor Gadget's headers were not found"),
        ("fatal error: 'gadget/macros.h' file not found", "set IG_SOURCE_PATH, or pass --include DIR"),
        ("fatal error: error in backend: Incorrect flag for llvm.bpf.preserve.type.info intrinsic",
         "bpf_core_type_matches() needs clang >= 15"),
        ("error: use of undeclared identifier 'x'", None),
    ],
)
def test_compile_failures_get_a_hint_where_one_is_known(clang_output: str, hint: str | None) -> None:
    found = compile_hint(clang_output)
    assert (hint in found) if hint else found == ""
