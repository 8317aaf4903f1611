"""Fake compilers for the build tests: shell scripts that answer ``--version`` like the real tools,
write their product where they are told to, and leave one file per run with their argv, working
directory and the environment variables the build sets (``<record>/<tool>.<pid>``)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

WASM_BYTES = b"\x00asm\x01\x00\x00\x00"


def write_script(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


RECORDED_VARIABLES = ("CGO_ENABLED", "GOOS", "GOARCH", "GOTOOLCHAIN", "CARGO_TARGET_DIR")


def _record(record: Path, tool: str) -> str:
    """Shell lines writing this run's argv (one per line), cwd and build variables to a file of its own."""
    lines = [f"out={shlex.quote(str(record / tool))}.$$", 'printf "%s\\n" "$@" > "$out"',
             'printf "cwd=%s\\n" "$(pwd)" > "$out.env"']
    lines += [f'printf "{name}=%s\\n" "${{{name}-unset}}" >> "$out.env"' for name in RECORDED_VARIABLES]
    return "\n".join(lines) + "\n"


def fake_clang(directory: Path, record: Path, name: str = "clang-19",
               version: str = "fakevendor clang version 19.1.7 (fake)", before_output: str = "") -> Path:
    """Writes ``fake-object for <arch>`` to its ``-o``; ``before_output`` runs first (with ``$arch`` set)."""
    record.mkdir(parents=True, exist_ok=True)
    return write_script(directory, name, f"""
if [ "$1" = "--version" ]; then echo {shlex.quote(version)}; echo "Target: bpf"; exit 0; fi
{_record(record, "clang")}
arch=""; output=""; previous=""
for arg in "$@"; do
  case "$arg" in __TARGET_ARCH_*) arch="${{arg#__TARGET_ARCH_}}";; esac
  if [ "$previous" = "-o" ]; then output="$arg"; fi
  previous="$arg"
done
{before_output}
printf "fake-object for %s" "$arch" > "$output"
""")


def fake_strip(directory: Path, record: Path, name: str = "llvm-strip-19", llvm_version: str = "19.1.7") -> Path:
    record.mkdir(parents=True, exist_ok=True)
    return write_script(directory, name, f"""
if [ "$1" = "--version" ]; then echo "LLVM (http://llvm.org/):"; echo "  LLVM version {llvm_version}"; exit 0; fi
{_record(record, "strip")}
""")


def fake_go(directory: Path, record: Path, version: str = "go1.26.0", before_output: str = "") -> Path:
    """``go version`` says ``version``; ``go build`` writes a minimal wasm module to its ``-o``."""
    record.mkdir(parents=True, exist_ok=True)
    return write_script(directory, "go", f"""
if [ "$1" = "version" ]; then echo "go version {version} linux/amd64"; exit 0; fi
{_record(record, "go")}
output=""; previous=""
for arg in "$@"; do
  if [ "$previous" = "-o" ]; then output="$arg"; fi
  previous="$arg"
done
{before_output}
printf '\\000asm\\001\\000\\000\\000' > "$output"
""")


@dataclass(frozen=True)
class FakeRust:
    cargo: Path
    sysroot: Path


def fake_rust(directory: Path, record: Path, package: str, version: str = "1.95.0",
              with_wasm_target: bool = True) -> FakeRust:
    """cargo and rustc side by side (as rustup installs them); the sysroot has wasm32-wasip1 or not."""
    record.mkdir(parents=True, exist_ok=True)
    sysroot = directory / "sysroot"
    (sysroot / "lib" / "rustlib" / "x86_64-unknown-linux-gnu").mkdir(parents=True, exist_ok=True)
    if with_wasm_target:
        (sysroot / "lib" / "rustlib" / "wasm32-wasip1").mkdir(parents=True, exist_ok=True)
    write_script(directory, "rustc", f"""
if [ "$1" = "--print" ] && [ "$2" = "sysroot" ]; then echo {shlex.quote(str(sysroot))}; exit 0; fi
exit 1
""")
    product = package.replace("-", "_")
    cargo = write_script(directory, "cargo", f"""
if [ "$1" = "--version" ]; then echo "cargo {version} (fake 2026-01-01)"; exit 0; fi
{_record(record, "cargo")}
mkdir -p "$CARGO_TARGET_DIR/wasm32-wasip1/release"
printf '\\000asm\\001\\000\\000\\000' > "$CARGO_TARGET_DIR/wasm32-wasip1/release/{product}.wasm"
""")
    return FakeRust(cargo, sysroot)


@dataclass(frozen=True)
class Run:
    argv: list[str]
    env: dict[str, str]


def recorded_runs(record: Path, tool: str) -> list[Run]:
    """Every recorded run of ``tool``, in no particular order."""
    runs = []
    for argv_file in sorted(record.glob(f"{tool}.*")):
        if argv_file.suffix == ".env":
            continue
        env_lines = Path(f"{argv_file}.env").read_text().splitlines()
        env = dict(line.split("=", 1) for line in env_lines)
        runs.append(Run(argv_file.read_text().splitlines(), env))
    return runs
