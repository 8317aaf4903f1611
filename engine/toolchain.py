"""Which programs ``image build`` runs: the newest clang with its own llvm-strip, and Go or cargo for wasm.

Each tool is asked for its version once, before anything is compiled, so a missing or too old tool
fails the build in one line that names the tool, the version found and the version needed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .buildjobs import read_output, start_in_session, wait_or_kill
from .buildspec import BuildError

VERSION_TIMEOUT = 30
"""Seconds a tool gets to print its version; a tool that hangs on ``--version`` is not usable."""

RUST_WASM_TARGET = "wasm32-wasip1"
RUST_WASM_TARGET_SINCE = (1, 78, 0)
"""Rust releases before 1.78 call this target ``wasm32-wasi``; ig's builder asks for ``wasm32-wasip1``."""

_CLANG_NAME = re.compile(r"clang-(\d+)")
_CLANG_VERSION = re.compile(r"clang version (\d+)\.(\d+)(?:\.(\d+))?")
_LLVM_VERSION = re.compile(r"LLVM version (\d+)\.")
_GO_VERSION = re.compile(r"\bgo(\d+)\.(\d+)(?:\.(\d+))?")
_CARGO_VERSION = re.compile(r"^cargo (\d+)\.(\d+)\.(\d+)")

Version = tuple[int, int, int]


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


def parse_version(text: str) -> Version | None:
    """``1.26``, ``1.26.0`` or ``1.26rc1`` -> ``(1, 26, 0)``; anything else -> None."""
    match = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def _search_path(search_path: str | None) -> str:
    return os.environ.get("PATH", os.defpath) if search_path is None else search_path


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _resolve_command(name: str, option: str, search_path: str) -> str:
    """A ``--clang``/``--go``/``--cargo`` value: a path (with ``/``) or a command name looked up in PATH.

    The result is absolute: the compilers run in the gadget directory, not where the user stands."""
    if os.sep not in name:
        found = shutil.which(name, path=search_path)
        if found is None:
            raise BuildError(f"{option} {name}: not found in PATH")
        return found
    path = Path(name)
    if not path.exists():
        raise BuildError(f"{option} {name}: no such file")
    if not _is_executable(path):
        raise BuildError(f"{option} {name}: not an executable file")
    return str(path.absolute())  # the compilers run in the gadget directory


def tool_output(command: list[str], what: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                timeout: float = VERSION_TIMEOUT) -> str:
    """Standard output and error of a quick query such as ``--version``, whatever the exit status.

    The output goes to files, not pipes, so it is complete when the tool exits, whatever a process
    it left behind still holds open; a tool that does not exit within ``timeout`` seconds is killed
    with every process it started (its own session).
    """
    full_env = None if env is None else {**os.environ, **env}
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        try:
            process = start_in_session(command, stdout, stderr, full_env, cwd)
        except OSError as err:
            raise BuildError(f"{what}: cannot run {command[0]}: {err.strerror or err}") from None
        if not wait_or_kill(process, timeout):
            raise BuildError(f"{what}: {' '.join(command)} did not answer within {timeout:g} s")
        return read_output(stdout) + read_output(stderr)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# -- clang and llvm-strip -----------------------------------------------------------------------


@dataclass(frozen=True)
class Clang:
    """The eBPF compiler and the llvm-strip of the same LLVM release."""

    path: str
    strip: str
    major: int
    version_query: Future[str] = field(repr=False, compare=False)
    """First line of ``clang --version``; for a ``clang-<N>`` found in PATH it is asked while the
    compiles run, so that the build does not wait for one more clang to start, else before."""

    @property
    def version(self) -> str:
        """Recorded in the image (``Debian clang version 19.1.7 (…)``)."""
        return self.version_query.result()


def _in_background(query: Callable[[], str]) -> Future[str]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tool-version")
    future = pool.submit(query)
    pool.shutdown(wait=False)  # the thread ends with the query
    return future


def _answered(value: str) -> Future[str]:
    future: Future[str] = Future()
    future.set_result(value)
    return future


def installed_clangs(search_path: str | None = None) -> list[tuple[int, str]]:
    """Every ``clang-<N>`` in PATH as (N, path), newest first; PATH order breaks ties."""
    found: list[tuple[int, int, str]] = []
    for order, directory in enumerate(_search_path(search_path).split(os.pathsep)):
        try:
            names = os.listdir(directory or ".")
        except OSError:
            continue
        for name in names:
            match = _CLANG_NAME.fullmatch(name)
            path = Path(directory or ".") / name
            if match is not None and _is_executable(path):
                found.append((-int(match[1]), order, str(path)))
    return [(-negative_major, path) for negative_major, _, path in sorted(found)]


def _clang_version(path: str, what: str) -> tuple[str, int]:
    output = tool_output([path, "--version"], what)
    match = _CLANG_VERSION.search(output)
    if match is None:
        said = _first_line(output) or "nothing"
        raise BuildError(f"{what} {path}: not a clang (its --version says: {said})")
    line = next(line.strip() for line in output.splitlines() if _CLANG_VERSION.search(line))
    return line, int(match[1])


def _strip_major(path: str) -> int | None:
    match = _LLVM_VERSION.search(tool_output([path, "--version"], "llvm-strip"))
    return int(match[1]) if match else None


def find_strip(clang_path: str, major: int, search_path: str | None = None) -> str:
    """``llvm-strip-<N>`` beside the real clang binary or in PATH; else an ``llvm-strip`` of LLVM N."""
    path = _search_path(search_path)
    real_dir = Path(os.path.realpath(clang_path)).parent
    versioned = f"llvm-strip-{major}"
    if _is_executable(real_dir / versioned):
        return str(real_dir / versioned)
    in_path = shutil.which(versioned, path=path)
    if in_path is not None:
        return in_path
    for candidate in (real_dir / "llvm-strip", shutil.which("llvm-strip", path=path)):
        if candidate is not None and _is_executable(Path(candidate)) and _strip_major(str(candidate)) == major:
            return str(candidate)
    raise BuildError(
        f"llvm-strip of LLVM {major} (for {clang_path}) not found: no {versioned} in PATH or in {real_dir}, "
        f"and no llvm-strip of version {major} (Debian: apt-get install llvm-{major})"
    )


def find_clang(explicit: str | None = None, search_path: str | None = None) -> Clang:
    """``--clang`` if given; else the highest ``clang-<N>`` in PATH, then plain ``clang``."""
    path = _search_path(search_path)
    if explicit is not None:
        clang, what = _resolve_command(explicit, "--clang", path), "--clang"
    else:
        candidates = installed_clangs(path)
        if candidates:
            major, named = candidates[0]
            query = _in_background(lambda: _named_clang_version(named, major))
            return Clang(named, find_strip(named, major, path), major, query)
        plain = shutil.which("clang", path=path)
        if plain is None:
            raise BuildError(
                "clang not found in PATH (looked for clang-<version> and clang); eBPF programs need it "
                "(Debian: apt-get install clang-19 llvm-19)"
            )
        clang, what = plain, "clang"
    version, major = _clang_version(clang, what)
    return Clang(clang, find_strip(clang, major, path), major, _answered(version))


def _named_clang_version(path: str, named_major: int) -> str:
    version, major = _clang_version(path, "clang")
    if major != named_major:
        raise BuildError(f"{path} says it is clang {major}, not {named_major} (its --version: {version})")
    return version


# -- Go -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoTool:
    path: str
    version: Version
    text: str
    """As Go names itself (``go1.26.8``); recorded in the image."""


GO_QUERY_ENV = {"GOTOOLCHAIN": "local"}
"""Without it a ``go`` newer than 1.21 may download and run another toolchain instead of answering."""


def find_go(explicit: str | None, needed: Version | None, what: str, search_path: str | None = None) -> GoTool:
    """The ``go`` to build with; ``needed`` is the ``go`` line of the module's go.mod."""
    path = _search_path(search_path)
    wanted = f"Go >= {format_version(needed)}" if needed else "Go >= 1.24 (GOOS=wasip1 with -buildmode=c-shared)"
    if explicit is not None:
        go = _resolve_command(explicit, "--go", path)
    else:
        found = shutil.which("go", path=path)
        if found is None:
            raise BuildError(f"{what}: go not found in PATH; the module needs {wanted} (install it or pass --go PATH)")
        go = found
    output = tool_output([go, "version"], what, env=GO_QUERY_ENV)
    match = _GO_VERSION.search(output)
    if match is None:
        said = _first_line(output) or "nothing"
        raise BuildError(f"{what}: {go} is not a Go toolchain (go version says: {said})")
    version = (int(match[1]), int(match[2]), int(match[3] or 0))
    text = match[0]
    if needed is not None and version < needed:
        raise BuildError(
            f"{what}: {go} is {text}; the module's go.mod needs {wanted} (GOTOOLCHAIN=local, as ig's builder; "
            "install it or pass --go PATH)"
        )
    return GoTool(go, version, text)


# -- Rust ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CargoTool:
    path: str
    version: Version
    text: str
    """First line of ``cargo --version``; recorded in the image."""


def _rustc_for(cargo: str, search_path: str) -> str | None:
    """The rustc cargo will run: ``RUSTC``, else the one beside cargo (rustup proxies), else PATH's."""
    configured = os.environ.get("RUSTC")
    if configured:
        return shutil.which(configured, path=search_path) or configured
    beside = Path(cargo).parent / "rustc"
    if _is_executable(beside):
        return str(beside)
    return shutil.which("rustc", path=search_path)


def find_cargo(
    explicit: str | None, needed: Version | None, crate_dir: Path, what: str, search_path: str | None = None
) -> CargoTool:
    """cargo of at least ``needed`` (the crate's ``rust-version``) and of Rust 1.78, with wasm32-wasip1 installed."""
    path = _search_path(search_path)
    minimum = max(needed or RUST_WASM_TARGET_SINCE, RUST_WASM_TARGET_SINCE)
    wanted = f"Rust >= {format_version(minimum)} with the {RUST_WASM_TARGET} target"
    if explicit is not None:
        cargo = _resolve_command(explicit, "--cargo", path)
    else:
        found = shutil.which("cargo", path=path)
        if found is None:
            raise BuildError(
                f"{what}: cargo not found in PATH; the crate needs {wanted} (install it or pass --cargo PATH)"
            )
        cargo = found
    output = tool_output([cargo, "--version"], what, cwd=crate_dir)
    match = _CARGO_VERSION.search(output.strip())
    if match is None:
        said = _first_line(output) or "nothing"
        raise BuildError(f"{what}: {cargo} is not cargo (cargo --version says: {said})")
    version = (int(match[1]), int(match[2]), int(match[3]))
    text = _first_line(output)
    if version < minimum:
        raise BuildError(f"{what}: {cargo} is cargo {format_version(version)}; the crate needs {wanted}")
    rustc = _rustc_for(cargo, path)
    sysroot = _first_line(tool_output([rustc, "--print", "sysroot"], what, cwd=crate_dir)) if rustc else ""
    if not sysroot or not (Path(sysroot) / "lib" / "rustlib" / RUST_WASM_TARGET).is_dir():
        where = f"in {sysroot}" if sysroot else "(no rustc found to ask)"
        raise BuildError(
            f"{what}: cargo {format_version(version)} has no {RUST_WASM_TARGET} standard library {where}; "
            f"the crate needs {wanted} (rustup target add {RUST_WASM_TARGET})"
        )
    return CargoTool(cargo, version, text)
