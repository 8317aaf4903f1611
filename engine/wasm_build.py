"""Building a gadget's wasm module from Go or Rust sources with the commands of ig's builder.

Go (``wasm: go/program.go``): ``go build -C go -o <out>/program.wasm -buildmode=c-shared
-ldflags "-w -s" program.go`` with ``CGO_ENABLED=0 GOOS=wasip1 GOARCH=wasm`` and, as in ig's builder
image, ``GOTOOLCHAIN=local``; the Go needed is the ``go`` line of the module's go.mod.
Rust (``wasm: rust/src/lib.rs``): ``cargo build --target wasm32-wasip1 --release --manifest-path
rust/Cargo.toml`` with ``CARGO_TARGET_DIR=<out>``, then ``<out>/wasm32-wasip1/release/<package>.wasm``
becomes ``<out>/program.wasm``.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .buildjobs import Step
from .buildspec import BuildError
from .toolchain import RUST_WASM_TARGET, Version, find_cargo, find_go, format_version, parse_version

WASM_BUILD_TIMEOUT = 1800
"""A first Go build compiles the standard library for wasm and may fetch modules."""

GO_BUILD_ENV = {"CGO_ENABLED": "0", "GOOS": "wasip1", "GOARCH": "wasm", "GOTOOLCHAIN": "local"}
PROGRAM_WASM = "program.wasm"

_GO_DIRECTIVE = re.compile(r"^\s*go\s+(\S+)\s*(?://.*)?$", re.MULTILINE)


@dataclass(frozen=True)
class WasmPlan:
    """What to run, where the module appears, and the compiler to record in the image."""

    steps: tuple[Step, ...]
    product: Path
    compiler: str
    describe: str


def wasm_source_kind(name: str) -> str | None:
    if name.endswith(".go"):
        return "go"
    if name.endswith(".rs"):
        return "rust"
    return None


def find_go_mod(start: Path) -> Path | None:
    """The go.mod that governs a package directory: the nearest at or above it, as ``go`` looks."""
    for directory in (start, *start.parents):
        if (directory / "go.mod").is_file():
            return directory / "go.mod"
    return None


def go_mod_version(go_mod: Path) -> Version | None:
    try:
        text = go_mod.read_text(errors="replace")
    except OSError as err:
        raise BuildError(f"{go_mod}: cannot read: {err.strerror or err}") from None
    match = _GO_DIRECTIVE.search(text)
    return parse_version(match[1]) if match else None


def plan_go(gadget_dir: Path, source: str, out_dir: Path, go: str | None) -> WasmPlan:
    """ig's ``go build`` step, after checking that the Go found is as new as go.mod asks."""
    package_dir = Path(source).parent
    go_mod = find_go_mod((gadget_dir / package_dir).resolve())
    needed = go_mod_version(go_mod) if go_mod else None
    tool = find_go(go, needed, f"wasm {source}")
    output = out_dir.resolve() / PROGRAM_WASM
    command = [
        tool.path, "build", "-C", str(package_dir), "-o", str(output),
        "-buildmode=c-shared", "-ldflags", "-w -s", Path(source).name,
    ]
    step = Step(command, gadget_dir, f"go build wasm ({source})", env=GO_BUILD_ENV, timeout=WASM_BUILD_TIMEOUT)
    asked = f"{go_mod} asks for {format_version(needed)}" if needed else "no go.mod with a go line"
    return WasmPlan((step,), output, tool.text, f"wasm: {tool.path} ({tool.text}; {asked})")


def _cargo_package(manifest: Path) -> tuple[str, Version | None]:
    try:
        data = tomllib.loads(manifest.read_text(errors="replace"))
    except OSError as err:
        raise BuildError(f"{manifest}: cannot read: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise BuildError(f"{manifest}: invalid TOML: {err}") from None
    package = data.get("package")
    name = package.get("name") if isinstance(package, dict) else None
    if not isinstance(name, str) or not name:
        raise BuildError(f"{manifest}: no [package] name")
    rust_version = package.get("rust-version") if isinstance(package, dict) else None
    return name, parse_version(rust_version) if isinstance(rust_version, str) else None


def plan_rust(gadget_dir: Path, source: str, out_dir: Path, cargo: str | None) -> WasmPlan:
    """ig's ``cargo build`` step: the crate is the Cargo.toml one level above the source's directory."""
    manifest = ((gadget_dir / source).parent.parent / "Cargo.toml").resolve()
    if not manifest.is_file():
        raise BuildError(f"wasm {source}: no Cargo.toml at {manifest}")
    name, rust_version = _cargo_package(manifest)
    tool = find_cargo(cargo, rust_version, manifest.parent, f"wasm {source}")
    target_dir = out_dir.resolve()
    command = [tool.path, "build", "--target", RUST_WASM_TARGET, "--release", "--manifest-path", str(manifest)]
    step = Step(command, gadget_dir, f"cargo build ({source})", env={"CARGO_TARGET_DIR": str(target_dir)},
                timeout=WASM_BUILD_TIMEOUT)
    # cargo names a cdylib after the package with '-' turned into '_'
    product = target_dir / RUST_WASM_TARGET / "release" / f"{name.replace('-', '_')}.wasm"
    return WasmPlan((step,), product, tool.text, f"wasm: {tool.path} ({tool.text}, crate {name})")


def plan_wasm(gadget_dir: Path, source: str, out_dir: Path, go: str | None, cargo: str | None) -> WasmPlan:
    kind = wasm_source_kind(source)
    if kind == "go":
        return plan_go(gadget_dir, source, out_dir, go)
    if kind == "rust":
        return plan_rust(gadget_dir, source, out_dir, cargo)
    raise BuildError(f"wasm: unsupported wasm file type: {source!r} (expected .wasm, .go or .rs)")


def collect_wasm(plan: WasmPlan, out_dir: Path) -> bytes:
    """The built module; a cargo product is also copied to ``program.wasm`` as ig's builder does."""
    if not plan.product.is_file():
        raise BuildError(f"wasm build finished without producing {plan.product}")
    target = out_dir.resolve() / PROGRAM_WASM
    if plan.product != target:
        shutil.copyfile(plan.product, target)
    return plan.product.read_bytes()
