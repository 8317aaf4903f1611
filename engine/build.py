"""I/O half of ``image build``: find the gadget's files, run clang, then write the image into the store.

Everything is compiled and read before the store is touched, so a compile error leaves the store
exactly as it was. The bytes of the image come from :mod:`.buildspec`.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .buildspec import (
    ARCHS,
    DEFAULT_EBPF_SOURCE,
    HOST_KERNEL_ARCH,
    TARGET_ARCH_MACRO,
    ArchLayers,
    BuildError,
    BuildFile,
    ImagePlan,
    created_timestamp,
    parse_build_file,
    plan_image,
)
from .descriptor import Descriptor
from .reference import Reference, normalize
from .store import Store
from .userpath import input_name, read_input
from .version import package_version

__all__ = ["BuildError", "BuildRequest", "BuiltImage", "GadgetSources", "build_image", "compile_gadget"]

PROJECT_INCLUDE_DIR = Path(__file__).resolve().parents[1] / "include"
"""Small gadget headers shipped in the source tree (present in a checkout / editable install)."""

COMPILE_TIMEOUT = 300
MAX_BUILD_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class BuildRequest:
    """What ``gadgetstore image build`` was asked to do; paths as the user gave them."""

    gadget_dir: Path = Path(".")
    build_file: Path | None = None
    output_dir: Path | None = None
    source_date_epoch: str | None = None
    include_dirs: tuple[Path, ...] | None = None


@dataclass(frozen=True)
class GadgetSources:
    """The inputs build.yaml points at; ``ebpf_source`` stays relative to ``gadget_dir`` for clang."""

    gadget_dir: Path
    ebpf_source: str | None
    wasm: Path | None
    metadata: Path | None


@dataclass(frozen=True)
class BuiltImage:
    descriptor: Descriptor
    reference: Reference | None

    def __str__(self) -> str:
        """``<full-repo>:<tag>@<digest>``, or ``@<digest>`` for an untagged build, as ig prints it."""
        if self.reference is None:
            return f"@{self.descriptor.digest}"
        return f"{self.reference.repository}:{self.reference.tag}@{self.descriptor.digest}"


def builder_version() -> str:
    """Value of ``io.inspektor-gadget.builder.version``: who built the image, from package metadata."""
    return f"gadgetstore {package_version()}"


# -- finding the gadget's files -----------------------------------------------------------------


def _refuse_flag(value: str, what: str) -> None:
    """A path that clang would read as an option (``-…``) or a response file (``@…``) is refused."""
    text = value.strip()
    if text.startswith("-"):
        raise BuildError(f"{what} {value!r} looks like a compiler flag; flags are not accepted")
    if text.startswith("@"):
        raise BuildError(f"{what} {value!r} looks like a response file; response files are not accepted")


def read_build_file(request: BuildRequest) -> BuildFile:
    """``-f`` is relative to the working directory (``-``: standard input); the default ``build.yaml``
    may be absent."""
    if request.build_file is not None:
        data = read_input(request.build_file, "build file", MAX_BUILD_FILE_BYTES, BuildError)
        return parse_build_file(data, input_name(request.build_file))
    path = request.gadget_dir / "build.yaml"
    try:
        return parse_build_file(path.read_bytes(), str(path))
    except FileNotFoundError:
        return BuildFile()


def _has_go_sources(gadget_dir: Path) -> bool:
    go_dir = gadget_dir / "go"
    return go_dir.is_dir() and any(p.is_file() for p in go_dir.rglob("*.go"))


def find_sources(request: BuildRequest) -> GadgetSources:
    """Apply ig's rules: a missing default ``program.bpf.c`` means no eBPF, any other missing source is an error."""
    gadget_dir = request.gadget_dir
    if not gadget_dir.is_dir():
        raise BuildError(f"gadget directory {gadget_dir} does not exist")
    conf = read_build_file(request)

    ebpf: str | None = conf.ebpfsource
    if not (gadget_dir / conf.ebpfsource).is_file() or not conf.ebpfsource:
        if conf.ebpfsource != DEFAULT_EBPF_SOURCE:
            raise BuildError(f"source file {conf.ebpfsource!r} not found in {gadget_dir}")
        ebpf = None
    if ebpf is not None:
        _refuse_flag(ebpf, "ebpfsource")

    wasm: Path | None = None
    if conf.wasm:
        if conf.wasm.endswith((".go", ".rs")):
            raise BuildError(
                f"wasm: {conf.wasm!r}: building wasm modules from Go or Rust sources is not supported; "
                "build the module yourself and set 'wasm' in build.yaml to the .wasm file"
            )
        if not conf.wasm.endswith(".wasm"):
            raise BuildError(f"wasm: unsupported wasm file type: {conf.wasm!r} (expected a .wasm module)")
        wasm = gadget_dir / conf.wasm
        if not wasm.is_file():
            raise BuildError(f"wasm module {conf.wasm!r} not found in {gadget_dir}")

    metadata = gadget_dir / conf.metadata if conf.metadata else None
    if metadata is not None and not metadata.is_file():
        metadata = None

    if ebpf is None and metadata is None and wasm is None:
        if _has_go_sources(gadget_dir):
            raise BuildError(
                f"{gadget_dir} has only Go sources (go/); building wasm modules from Go is not supported, "
                "build the .wasm module yourself and set 'wasm' in build.yaml"
            )
        raise BuildError(
            "at least one of ebpf source (program.bpf.c), metadata (gadget.yaml), "
            ".go files (present in go folder) or wasm module is required"
        )
    return GadgetSources(gadget_dir, ebpf, wasm, metadata)


# -- compiling ----------------------------------------------------------------------------------


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"{name} not found in PATH; eBPF programs need it (Debian: apt-get install {package})")
    return path


def host_kernel_arch() -> str:
    """ig adds the *host's* multiarch include dir (asm/types.h) for every target."""
    machine = platform.machine()
    try:
        return HOST_KERNEL_ARCH[machine]
    except KeyError:
        raise BuildError(f"no kernel architecture corresponding to host machine {machine!r}") from None


def default_include_dirs(arch: str) -> tuple[Path, ...]:
    candidates = (PROJECT_INCLUDE_DIR, PROJECT_INCLUDE_DIR / "gadget" / arch)
    return tuple(p for p in candidates if p.is_dir())


def clang_command(clang: str, source: str, arch: str, output: Path, include_dirs: tuple[Path, ...]) -> list[str]:
    """The command ig's builder runs (cmd/common/image/build-step.go), with our include dirs."""
    command = [
        clang, "-target", "bpf", "-Wall", "-g", "-O2",
        f"-I/usr/include/{host_kernel_arch()}-linux-gnu",
        "-D", f"__TARGET_ARCH_{TARGET_ARCH_MACRO[arch]}",
        "-c", source,
    ]
    for include in include_dirs:
        command += ["-I", f"{include}/"]
    return [*command, "-o", str(output)]


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        result = subprocess.run(
            command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            errors="replace", timeout=COMPILE_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: timed out after {COMPILE_TIMEOUT} s") from None
    if result.returncode != 0:
        message = (result.stderr or result.stdout).rstrip() or "(no output)"
        raise BuildError(f"{what} failed (exit status {result.returncode}):\n{message}{_missing_header_hint(message)}")


def _missing_header_hint(message: str) -> str:
    """The usual first-build failure is a missing -dev package; say which one."""
    for header, package in (("bpf/", "libbpf-dev"), ("linux/", "linux-libc-dev"), ("asm/", "linux-libc-dev")):
        if f"'{header}" in message and "file not found" in message:
            return f"\n(hint: install {package}, e.g. apt-get install {package})"
    return ""


def compile_ebpf(sources: GadgetSources, arch: str, out_dir: Path, include_dirs: tuple[Path, ...] | None) -> Path:
    """``<out>/<arch>.bpf.o``, compiled from inside the gadget dir so BTF names only the relative source."""
    assert sources.ebpf_source is not None
    clang = _tool("clang", "clang")
    strip = _tool("llvm-strip", "llvm")
    output = out_dir.resolve() / f"{arch}.bpf.o"
    includes = default_include_dirs(arch) if include_dirs is None else include_dirs
    command = clang_command(clang, sources.ebpf_source, arch, output, includes)
    _run(command, sources.gadget_dir, f"clang compile for {arch}")
    _run([strip, "-g", str(output)], sources.gadget_dir, f"llvm-strip for {arch}")
    return output


@contextlib.contextmanager
def _output_dir(requested: Path | None) -> Iterator[Path]:
    """``-o`` keeps the products; otherwise a temporary ``gadget-build-*`` dir is removed afterwards."""
    if requested is not None:
        requested.mkdir(parents=True, exist_ok=True)
        yield requested
        return
    with tempfile.TemporaryDirectory(prefix="gadget-build-") as tmp:
        yield Path(tmp)


@dataclass(frozen=True)
class CompiledGadget:
    layers: dict[str, ArchLayers]
    metadata: bytes | None


def compile_gadget(request: BuildRequest) -> CompiledGadget:
    """Compile for every arch and read all inputs into memory; the store is not involved yet."""
    sources = find_sources(request)
    wasm = sources.wasm.read_bytes() if sources.wasm is not None else None
    metadata = sources.metadata.read_bytes() if sources.metadata is not None else None
    layers: dict[str, ArchLayers] = {}
    with _output_dir(request.output_dir) as out_dir:
        for arch in ARCHS:
            ebpf = None
            if sources.ebpf_source is not None:
                ebpf = compile_ebpf(sources, arch, out_dir, request.include_dirs).read_bytes()
            layers[arch] = ArchLayers(ebpf=ebpf, wasm=wasm)
    return CompiledGadget(layers, metadata)


# -- writing into the store ---------------------------------------------------------------------


def commit_image(store: Store, plan: ImagePlan, reference: Reference | None) -> None:
    """Blobs children-first under the lease; then the tag, or a pin so gc keeps an untagged build."""
    with store.lease():
        for digest, data in plan.blobs.items():
            store.blobs.put(data, expected=digest)
        with store.transaction() as txn:
            if reference is not None:
                txn.tag(str(reference), plan.root)
            else:
                txn.pin(plan.root)


def parse_tag(image: str | None) -> Reference | None:
    """``-t`` is normalised like every ig image name; a digest cannot be a build's name."""
    if not image:
        return None
    reference = normalize(image)
    if reference.digest is not None:
        raise BuildError(f"invalid tag {image!r}: use name:tag, not a digest")
    return reference


def build_image(open_store: Callable[[], Store], request: BuildRequest, image: str | None) -> BuiltImage:
    """Compile, lay out and store one gadget image; the store is opened only once compiling succeeded."""
    reference = parse_tag(image)
    created = created_timestamp(request.source_date_epoch)
    compiled = compile_gadget(request)
    plan = plan_image(compiled.layers, compiled.metadata, created, builder_version())
    commit_image(open_store(), plan, reference)
    return BuiltImage(plan.root, reference)
