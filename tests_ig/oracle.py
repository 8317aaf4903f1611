"""ig's own builder commands, run by hand, and what llvm-readobj and bpftool say about an object.

ig's builder image (Dockerfiles/gadget-builder.Dockerfile) has ig's ``include/`` copied into
``/usr/include`` and libbpf's headers in ``/usr/include/bpf``; outside it, the checkout's
``include/`` stands for the first and ``IG_LIBBPF_HEADERS`` (if given) for the second.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGET_ARCH_MACRO = {"amd64": "x86", "arm64": "arm64"}
HOST_KERNEL_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}


def makefile_gadgets(ig_root: Path) -> list[str]:
    """The ``GADGETS ?=`` list of ig's gadgets/Makefile, in its order."""
    text = (ig_root / "gadgets" / "Makefile").read_text()
    match = re.search(r"^GADGETS \?=((?:.*\\\n)+)", text, re.MULTILINE)
    assert match is not None, "no GADGETS list in gadgets/Makefile"
    names = [line.strip().rstrip("\\").strip() for line in match[1].splitlines()]
    return [name for name in names if name and not name.startswith("#")]


def wasm_source(gadget_dir: Path) -> str | None:
    """The ``wasm:`` entry of the gadget's build.yaml (relative to the gadget), if it has one."""
    build_yaml = gadget_dir / "build.yaml"
    lines = build_yaml.read_text().splitlines() if build_yaml.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("wasm:")), None)


def ig_wasm_command(gadget_dir: Path, source: str, target_dir: Path) -> tuple[list[str], dict[str, str], Path]:
    """ig's builder's ``go build`` or ``cargo build`` of the gadget's wasm module, run in the gadget
    directory: (command, environment, module it writes)."""
    if source.endswith(".go"):
        env = {**os.environ, "CGO_ENABLED": "0", "GOOS": "wasip1", "GOARCH": "wasm", "GOTOOLCHAIN": "local"}
        output = target_dir / "program.wasm"
        command = ["go", "build", "-C", str(Path(source).parent), "-o", str(output),
                   "-buildmode=c-shared", "-ldflags", "-w -s", Path(source).name]
        return command, env, output
    manifest = (gadget_dir / source).parent.parent / "Cargo.toml"
    package = next(line.split('"')[1] for line in manifest.read_text().splitlines() if line.startswith("name"))
    command = ["cargo", "build", "--target", "wasm32-wasip1", "--release", "--manifest-path", str(manifest)]
    return command, {**os.environ, "CARGO_TARGET_DIR": str(target_dir)}, \
        target_dir / "wasm32-wasip1" / "release" / f"{package}.wasm"


def ig_clang_command(clang: str, ig_root: Path, arch: str, output: Path, libbpf: Path | None) -> list[str]:
    """cmd/common/image/build-step.go's clang step with IG_SOURCE_PATH set, builder paths mapped to the checkout."""
    include = ig_root / "include"
    command = [
        clang, "-target", "bpf", "-Wall", "-g", "-O2",
        f"-I/usr/include/{HOST_KERNEL_ARCH[platform.machine()]}-linux-gnu",
        "-D", f"__TARGET_ARCH_{TARGET_ARCH_MACRO[arch]}",
        "-c", "program.bpf.c",
        "-I", f"{include}/gadget/{arch}/",  # the builder's /usr/include/gadget/<arch>/
        "-o", str(output),
        "-I", f"{include}/", "-I", f"{include}/gadget/{arch}/",  # useInTreeHeaders
    ]
    if libbpf is not None:
        command += ["-I", f"{libbpf}/"]  # the builder's /usr/include/bpf
    return command


def run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, errors="replace", check=False)


@dataclass(frozen=True)
class ElfSummary:
    sections: tuple[tuple[str, str, int, int], ...]
    """(name, type, flags, size) in header order."""
    programs: tuple[tuple[str, str, int], ...]
    """(section, function, size) of every function symbol."""
    maps: dict[str, str]
    """Map name -> its BTF definition, written out independently of BTF type numbering."""
    globals: dict[str, tuple[tuple[str, int, int], ...]]
    """Data section -> (variable, offset, size) of its BTF DATASEC."""

    def differences(self, other: ElfSummary) -> list[str]:
        found = []
        for part in ("sections", "programs", "maps", "globals"):
            if getattr(self, part) != getattr(other, part):
                found.append(part)
        return found


def elf_summary(path: Path, readobj: str, bpftool: str = "bpftool") -> ElfSummary:
    result = run([readobj, "--elf-output-style=JSON", "--sections", "--symbols", str(path)])
    assert result.returncode == 0, result.stderr
    [document] = json.loads(result.stdout)
    sections = tuple(
        (s["Name"]["Name"], s["Type"]["Name"], s["Flags"]["Value"], s["Size"])
        for s in (entry["Section"] for entry in document["Sections"])
    )
    programs = tuple(sorted(
        (sym["Section"]["Name"], sym["Name"]["Name"], sym["Size"])
        for sym in (entry["Symbol"] for entry in document["Symbols"])
        if sym["Type"]["Name"] == "Function"
    ))
    dump = run([bpftool, "-j", "btf", "dump", "file", str(path)])
    assert dump.returncode == 0, dump.stderr
    types = {t["id"]: t for t in json.loads(dump.stdout)["types"]}
    maps: dict[str, str] = {}
    data: dict[str, tuple[tuple[str, int, int], ...]] = {}
    for datasec in (t for t in types.values() if t["kind"] == "DATASEC"):
        variables = [(types[v["type_id"]], v) for v in datasec["vars"]]
        if datasec["name"] == ".maps":
            for var, _ in variables:
                maps[var["name"]] = _canonical(types, var["type_id"], frozenset(), expand=True)
        else:
            data[datasec["name"]] = tuple(sorted((var["name"], v["offset"], v["size"]) for var, v in variables))
    return ElfSummary(sections, programs, maps, data)


def _canonical(types: dict[int, Any], type_id: int, inside: frozenset[str], expand: bool) -> str:
    """A type written out by structure; named structs are expanded once and never behind a pointer."""
    if type_id == 0:
        return "void"
    t = types[type_id]
    kind, name = t["kind"], t.get("name", "(anon)")
    if kind in ("STRUCT", "UNION"):
        if not expand or (name != "(anon)" and name in inside):
            return f"{kind} {name}"
        members = ",".join(
            f"{m['name']}@{m['bits_offset']}:{_canonical(types, m['type_id'], inside | {name}, True)}"
            for m in t["members"]
        )
        return f"{kind} {name} {t['size']} {{{members}}}"
    if kind == "PTR":
        return "*" + _canonical(types, t["type_id"], inside, expand=False)
    if kind == "ARRAY":
        return f"[{t['nr_elems']}]" + _canonical(types, t["type_id"], inside, expand)
    if kind in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG", "VAR"):
        return f"{kind} {name} " + _canonical(types, t["type_id"], inside, expand)
    if kind == "INT":
        return f"INT {name} {t['size']} {t.get('encoding')}"
    if kind in ("ENUM", "ENUM64"):
        return f"{kind} {name} {t['size']} " + ",".join(f"{v['name']}={v['val']}" for v in t.get("values", []))
    if kind == "FUNC_PROTO":
        params = ",".join(_canonical(types, p["type_id"], inside, False) for p in t["params"])
        return f"FUNC_PROTO({params})->" + _canonical(types, t["ret_type_id"], inside, False)
    return f"{kind} {name}"
