"""I/O half of ``image build``: find the gadget's files and tools, compile, then write the image into the store.

Everything is compiled and read before the store is touched, so a compile error leaves the store
exactly as it was. The bytes of the image come from :mod:`.buildspec`; where headers come from is
:mod:`.gadget_headers`, which programs run is :mod:`.toolchain` and :mod:`.wasm_build`, and how
they run side by side is :mod:`.buildjobs`.
"""

from __future__ import annotations

import contextlib
import platform
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .buildjobs import Step, run_jobs
from .buildspec import (
    ANNOTATION_EBPF_COMPILER,
    ANNOTATION_WASM_COMPILER,
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
from .gadget_headers import COMPAT_INCLUDE, SYSTEM_HEADER_DIRS, HeaderSearch, find_header_search, find_libbpf
from .reference import Reference, normalize
from .store import Store
from .toolchain import Clang, find_clang
from .userpath import input_name, read_input
from .version import package_version
from .wasm_build import WasmPlan, collect_wasm, plan_wasm, wasm_source_kind

__all__ = ["BuildError", "BuildRequest", "BuiltImage", "GadgetSources", "build_image", "compile_gadget"]

COMPILE_TIMEOUT = 300
MAX_BUILD_FILE_BYTES = 1024 * 1024

Log = Callable[[str], None]


def _quiet(line: str) -> None:
    del line


@dataclass(frozen=True)
class BuildRequest:
    """What ``gadgetstore image build`` was asked to do; paths as the user gave them."""

    gadget_dir: Path = Path(".")
    build_file: Path | None = None
    output_dir: Path | None = None
    source_date_epoch: str | None = None
    include_dirs: tuple[Path, ...] = ()
    """``--include DIR``s, in order (see :mod:`.gadget_headers`)."""
    ig_source_path: str | None = None
    """``IG_SOURCE_PATH`` as the caller read it from the environment."""
    clang: str | None = None
    go: str | None = None
    cargo: str | None = None


@dataclass(frozen=True)
class GadgetSources:
    """The inputs build.yaml points at; sources stay relative to ``gadget_dir``, as ig's builder passes them."""

    gadget_dir: Path
    ebpf_source: str | None
    wasm: Path | None
    """A prebuilt module, packaged as is."""
    metadata: Path | None
    wasm_source: str | None = None
    """A Go (``.go``) or Rust (``.rs``) source to build the module from."""
    ignored_keys: tuple[str, ...] = ()


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
    """A path that a compiler would read as an option (``-…``) or a response file (``@…``) is refused."""
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
    wasm_source: str | None = None
    if conf.wasm:
        _refuse_flag(conf.wasm, "wasm")
        if wasm_source_kind(conf.wasm) is not None:
            if not (gadget_dir / conf.wasm).is_file():
                raise BuildError(f"wasm source {conf.wasm!r} not found in {gadget_dir}")
            wasm_source = conf.wasm
        elif conf.wasm.endswith(".wasm"):
            wasm = gadget_dir / conf.wasm
            if not wasm.is_file():
                raise BuildError(f"wasm module {conf.wasm!r} not found in {gadget_dir}")
        else:
            raise BuildError(f"wasm: unsupported wasm file type: {conf.wasm!r} (expected .wasm, .go or .rs)")

    metadata = gadget_dir / conf.metadata if conf.metadata else None
    if metadata is not None and not metadata.is_file():
        metadata = None

    if ebpf is None and metadata is None and wasm is None and wasm_source is None:
        if _has_go_sources(gadget_dir):
            raise BuildError(
                f"{gadget_dir} has Go sources in go/ but build.yaml names no wasm module to build; "
                "set 'wasm: go/program.go' in build.yaml"
            )
        raise BuildError(
            "at least one of ebpf source (program.bpf.c), metadata (gadget.yaml), "
            ".go files (present in go folder) or wasm module is required"
        )
    return GadgetSources(gadget_dir, ebpf, wasm, metadata, wasm_source, conf.ignored)


# -- compiling ----------------------------------------------------------------------------------


def host_kernel_arch() -> str:
    """ig adds the *host's* multiarch include dir (asm/types.h) for every target."""
    machine = platform.machine()
    try:
        return HOST_KERNEL_ARCH[machine]
    except KeyError:
        raise BuildError(f"no kernel architecture corresponding to host machine {machine!r}") from None


def host_multiarch_include() -> Path:
    return Path(f"/usr/include/{host_kernel_arch()}-linux-gnu")


def clang_command(
    clang: str, source: str, arch: str, output: Path, include_dirs: tuple[Path, ...], compat: bool = False
) -> list[str]:
    """The command ig's builder runs (cmd/common/image/build-step.go), with our include dirs.

    With ``compat`` the libbpf compatibility directory comes first, so that its ``bpf/bpf_tracing.h``
    is found before the real one, which it includes with ``#include_next``.
    """
    command = [clang, "-target", "bpf", "-Wall", "-g", "-O2", f"-I{host_multiarch_include()}"]
    if compat:
        command += ["-I", f"{COMPAT_INCLUDE}/"]
    command += ["-D", f"__TARGET_ARCH_{TARGET_ARCH_MACRO[arch]}", "-c", source]
    for include in include_dirs:
        command += ["-I", f"{include}/"]
    return [*command, "-o", str(output)]


def compile_hint(message: str) -> str:
    """The usual first-build failures: a missing -dev package, no ig headers, a clang too old."""
    if "file not found" in message:
        for header, package in (("bpf/", "libbpf-dev"), ("linux/", "linux-libc-dev"), ("asm/", "linux-libc-dev")):
            if f"'{header}" in message:
                return f"\n(hint: install {package}, e.g. apt-get install {package})"
        if "'vmlinux.h'" in message or "'gadget/" in message:
            return ("\n(hint: Inspektor Gadget's headers were not found: build inside an ig checkout, "
                    "set IG_SOURCE_PATH, or pass --include DIR)")
    if "llvm.bpf.preserve.type.info" in message:
        return "\n(hint: bpf_core_type_matches() needs clang >= 15; install clang-19 or pass --clang)"
    return ""


@dataclass(frozen=True)
class EbpfPlan:
    clang: Clang
    headers: HeaderSearch
    jobs: dict[str, tuple[Step, ...]]
    notes: list[str] = field(default_factory=list)


def plan_ebpf(request: BuildRequest, sources: GadgetSources, out_dir: Path) -> EbpfPlan:
    """clang and llvm-strip for each arch, with the header search and libbpf check done up front."""
    assert sources.ebpf_source is not None
    clang = find_clang(request.clang)
    headers = find_header_search(sources.gadget_dir, request.include_dirs, request.ig_source_path)
    notes = [f"eBPF compiler: {clang.path} (clang {clang.major}); strip: {clang.strip}", *headers.describe()]
    jobs: dict[str, tuple[Step, ...]] = {}
    for arch in ARCHS:
        include_dirs = headers.include_dirs(arch)
        libbpf = find_libbpf([host_multiarch_include(), *include_dirs, *SYSTEM_HEADER_DIRS])
        compat = libbpf is not None and libbpf.needs_compat
        if arch == ARCHS[0] and libbpf is not None:
            notes.append(libbpf.describe())
        output = out_dir.resolve() / f"{arch}.bpf.o"
        command = clang_command(clang.path, sources.ebpf_source, arch, output, include_dirs, compat)
        jobs[arch] = (
            Step(command, sources.gadget_dir, f"clang compile for {arch}", timeout=COMPILE_TIMEOUT),
            Step([clang.strip, "-g", str(output)], sources.gadget_dir, f"llvm-strip for {arch}",
                 timeout=COMPILE_TIMEOUT),
        )
    return EbpfPlan(clang, headers, jobs, notes)


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
    tools: dict[str, str] = field(default_factory=dict)
    """Compilers to record in the image's annotations (annotation key -> version)."""


def compile_gadget(request: BuildRequest, log: Log = _quiet) -> CompiledGadget:
    """Compile every arch and the wasm module at once and read all inputs; the store is not involved yet.

    Every tool is found and its version checked before the first compiler starts. ``log`` gets the
    ``-v`` lines: tools, header directories, commands.
    """
    sources = find_sources(request)
    for key in sources.ignored_keys:
        log(f"build.yaml: {key!r} is ignored (ig's build.yaml has only ebpfsource, wasm and metadata)")
    prebuilt_wasm = sources.wasm.read_bytes() if sources.wasm is not None else None
    metadata = sources.metadata.read_bytes() if sources.metadata is not None else None
    tools: dict[str, str] = {}
    with _output_dir(request.output_dir) as out_dir:
        ebpf = plan_ebpf(request, sources, out_dir) if sources.ebpf_source is not None else None
        wasm_plan: WasmPlan | None = None
        if sources.wasm_source is not None:
            wasm_plan = plan_wasm(sources.gadget_dir, sources.wasm_source, out_dir, request.go, request.cargo)
        jobs: list[tuple[Step, ...]] = []
        if ebpf is not None:
            for line in ebpf.notes:
                log(line)
            jobs += ebpf.jobs.values()
        if wasm_plan is not None:
            tools[ANNOTATION_WASM_COMPILER] = wasm_plan.compiler
            log(wasm_plan.describe)
            jobs.append(wasm_plan.steps)
        for job in jobs:
            for step in job:
                log(f"$ {step.shell_line()}")
        run_jobs(jobs, compile_hint)
        if ebpf is not None:
            tools[ANNOTATION_EBPF_COMPILER] = ebpf.clang.version
            log(f"eBPF compiler version: {ebpf.clang.version}")
        wasm = collect_wasm(wasm_plan, out_dir) if wasm_plan is not None else prebuilt_wasm
        layers = {}
        for arch in ARCHS:
            ebpf_bytes = (out_dir / f"{arch}.bpf.o").read_bytes() if ebpf is not None else None
            layers[arch] = ArchLayers(ebpf=ebpf_bytes, wasm=wasm)
    return CompiledGadget(layers, metadata, tools)


# -- writing into the store ---------------------------------------------------------------------


def commit_image(store: Store, plan: ImagePlan, reference: Reference | None) -> None:
    """Blobs children-first under the lease; then the tag, or a pin so gc keeps an untagged build."""
    with store.lease():
        for digest, data in plan.blobs.items():
            store.ingest.put(data, digest)
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


def build_image(
    open_store: Callable[[], Store], request: BuildRequest, image: str | None, log: Log = _quiet
) -> BuiltImage:
    """Compile, lay out and store one gadget image; the store is opened only once compiling succeeded."""
    reference = parse_tag(image)
    created = created_timestamp(request.source_date_epoch)
    compiled = compile_gadget(request, log)
    plan = plan_image(compiled.layers, compiled.metadata, created, builder_version(), compiled.tools)
    commit_image(open_store(), plan, reference)
    return BuiltImage(plan.root, reference)
