"""Every gadget of ig's gadgets/Makefile, built with ``gadgetstore image build`` from inside the checkout
(as a user would), then checked against ig's builder commands run by hand: the eBPF objects of both
arches must have the same sections, programs, maps and globals (llvm-readobj, bpftool), and a wasm
module built from Go or Rust is compared with the one ig's ``go build`` / ``cargo build`` gives."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from gadgetstore.engine.analysis.wasm import parse_wasm
from gadgetstore.engine.analysis.wasmexec import gadget_api_version
from gadgetstore.engine.toolchain import find_clang
from tests_ig.oracle import (
    ElfSummary,
    elf_summary,
    ig_clang_command,
    ig_wasm_command,
    makefile_gadgets,
    run,
    wasm_source,
)
from tests_ig.results import RESULTS, Row

IG_ROOT = Path(os.environ.get("IG_SOURCE", ".")).resolve()
GADGETS = makefile_gadgets(IG_ROOT) if os.environ.get("IG_SOURCE") else []
LIBBPF = Path(os.environ["IG_LIBBPF_HEADERS"]).resolve() if os.environ.get("IG_LIBBPF_HEADERS") else None
ARCHS = ("amd64", "arm64")
EPOCH = "1700000000"


@pytest.fixture(scope="session")
def gadgetstore() -> list[str]:
    script = Path(sys.executable).parent / "gadgetstore"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gadgetstore.cli.main"]


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="session")
def ig_tools() -> tuple[str, str, str]:
    """clang for ig's commands (IG_CLANG, default clang-19), its llvm-strip and llvm-readobj."""
    clang = find_clang(os.environ.get("IG_CLANG", "clang-19"))
    readobj = shutil.which(f"llvm-readobj-{clang.major}") or shutil.which("llvm-readobj")
    assert readobj is not None, f"llvm-readobj-{clang.major} not found"
    return clang.path, clang.strip, readobj


def gadget_kind(gadget_dir: Path) -> str:
    build_yaml = (gadget_dir / "build.yaml").read_text() if (gadget_dir / "build.yaml").is_file() else ""
    wasm = "Go wasm" if ".go" in build_yaml else "Rust wasm" if ".rs" in build_yaml else ""
    if (gadget_dir / "program.bpf.c").is_file():
        return f"C + {wasm}" if wasm else "C"
    return wasm or "metadata only"


def first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if "error" in line.lower()), lines[0] if lines else "(no output)")[:160]


def compare_ebpf(row: Row, gadget_dir: Path, out: Path, reference: Path, tools: tuple[str, str, str]) -> None:
    clang, strip, readobj = tools
    same, identical, differences = True, True, []
    for arch in ARCHS:
        ours = out / f"{arch}.bpf.o"
        theirs = reference / f"{arch}.bpf.o"
        compiled = run(ig_clang_command(clang, IG_ROOT, arch, theirs, LIBBPF), cwd=gadget_dir)
        if compiled.returncode != 0:
            row.same_as_ig = "ig's flags do not compile here"
            row.notes.append(f"ig's command, {arch}: {first_error_line(compiled.stderr)}")
            if LIBBPF is None:
                pytest.skip("ig's own command needs libbpf >= 1.2 headers here: set IG_LIBBPF_HEADERS")
            pytest.fail(f"ig's own command failed for {arch}: {compiled.stderr[-2000:]}")
        assert run([strip, "-g", str(theirs)]).returncode == 0
        summary: ElfSummary = elf_summary(ours, readobj)
        found = summary.differences(elf_summary(theirs, readobj))
        differences += [f"{arch}: {part}" for part in found]
        same = same and not found
        identical = identical and ours.read_bytes() == theirs.read_bytes()
    row.same_as_ig = ("yes, byte-identical" if identical else "yes") if same else "no: " + ", ".join(differences)


def compare_wasm(row: Row, gadget_dir: Path, out: Path, reference: Path) -> None:
    ours = (out / "program.wasm").read_bytes()
    module = parse_wasm(ours)
    row.notes.append(f"wasm {len(ours):,} B, {len(module.upcalls())} upcalls, "
                     f"gadgetAPIVersion read: {gadget_api_version(module)}")
    source = wasm_source(gadget_dir)
    assert source is not None
    reference.mkdir(exist_ok=True)
    command, env, theirs = ig_wasm_command(gadget_dir, source, reference)
    built = run(command, cwd=gadget_dir, env=env)
    assert built.returncode == 0, built.stderr
    row.notes.append("wasm identical to ig's command" if theirs.read_bytes() == ours else
                     f"wasm differs from ig's command ({theirs.stat().st_size:,} B)")


@pytest.mark.parametrize("gadget", GADGETS)
def test_gadget_builds_as_igs_builder_builds_it(
    gadget: str, tmp_path: Path, store_root: Path, gadgetstore: list[str], ig_tools: tuple[str, str, str]
) -> None:
    gadget_dir = IG_ROOT / "gadgets" / gadget
    kind = gadget_kind(gadget_dir)
    row = RESULTS.setdefault(gadget, Row(gadget, kind))
    out = tmp_path / "out"
    result = run(
        [*gadgetstore, "--store", str(store_root), "image", "build", "-t", f"{gadget}:test", "-o", str(out), gadget],
        cwd=IG_ROOT / "gadgets", env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
    )
    if result.returncode != 0:
        row.archs = {arch: "build failed" for arch in ARCHS}
        row.notes.append(first_error_line(result.stderr))
        pytest.fail(result.stderr[-3000:])
    has_ebpf = (gadget_dir / "program.bpf.c").is_file()
    row.archs = {arch: ("ok" if (out / f"{arch}.bpf.o").is_file() else "missing") if has_ebpf else "— (no eBPF)"
                 for arch in ARCHS}
    if "wasm" in kind:
        compare_wasm(row, gadget_dir, out, tmp_path / "reference-wasm")
    if has_ebpf:
        assert all(value == "ok" for value in row.archs.values())
        reference = tmp_path / "reference"
        reference.mkdir()
        compare_ebpf(row, gadget_dir, out, reference, ig_tools)
        assert row.same_as_ig.startswith("yes"), row.same_as_ig
