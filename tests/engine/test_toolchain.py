"""Choosing the tools: the newest clang-<N> in PATH with the llvm-strip of the same LLVM, --clang,
and Go and cargo checked against what the module asks for; every refusal is one line."""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
from pathlib import Path

import pytest

from gadgetstore.engine.buildspec import BuildError
from gadgetstore.engine.toolchain import find_cargo, find_clang, find_go, installed_clangs, tool_output
from tests.support.fake_tools import fake_clang, fake_go, fake_rust, fake_strip, write_script


def path_of(*directories: Path) -> str:
    return os.pathsep.join(str(d) for d in directories)


def one_line(error: pytest.ExceptionInfo[BuildError]) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_the_highest_versioned_clang_wins_with_its_own_strip(tmp_path: Path) -> None:
    first, second, record = tmp_path / "first", tmp_path / "second", tmp_path / "record"
    fake_clang(first, record, "clang-15", "clang version 15.0.7")
    fake_clang(second, record, "clang-17", "Vendor clang version 17.0.6 (build 1)")
    fake_clang(second, record, "clang", "clang version 18.1.0")  # unversioned names come last
    fake_strip(first, record, "llvm-strip-15", "15.0.7")
    fake_strip(first, record, "llvm-strip-17", "17.0.6")
    fake_strip(second, record, "llvm-strip", "17.0.6")
    search = path_of(first, second)
    assert [major for major, _ in installed_clangs(search)] == [17, 15]
    clang = find_clang(search_path=search)
    assert (clang.path, clang.major, clang.strip) == (str(second / "clang-17"), 17, str(first / "llvm-strip-17"))
    assert clang.version == "Vendor clang version 17.0.6 (build 1)"


def test_path_order_breaks_a_tie(tmp_path: Path) -> None:
    record = tmp_path / "record"
    for directory in (tmp_path / "a", tmp_path / "b"):
        fake_clang(directory, record, "clang-19")
        fake_strip(directory, record, "llvm-strip-19")
    assert find_clang(search_path=path_of(tmp_path / "b", tmp_path / "a")).path == str(tmp_path / "b" / "clang-19")


def test_plain_clang_needs_a_strip_of_the_same_llvm(tmp_path: Path) -> None:
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    fake_clang(bin_dir, record, "clang", "Debian clang version 14.0.6")
    fake_strip(bin_dir, record, "llvm-strip", "15.0.0")
    with pytest.raises(BuildError) as error:
        find_clang(search_path=str(bin_dir))
    message = one_line(error)
    assert "llvm-strip of LLVM 14" in message and "apt-get install llvm-14" in message
    fake_strip(bin_dir, record, "llvm-strip", "14.0.6")
    assert find_clang(search_path=str(bin_dir)).strip == str(bin_dir / "llvm-strip")


def test_strip_beside_the_real_clang_binary(tmp_path: Path) -> None:
    """Debian's /usr/bin/clang-19 is a link into /usr/lib/llvm-19/bin, where llvm-strip-19 may be."""
    llvm_bin, links, record = tmp_path / "llvm-19" / "bin", tmp_path / "links", tmp_path / "record"
    real = fake_clang(llvm_bin, record, "clang")
    fake_strip(llvm_bin, record, "llvm-strip-19")
    links.mkdir()
    (links / "clang-19").symlink_to(real)
    clang = find_clang(search_path=str(links))
    assert (clang.path, clang.strip) == (str(links / "clang-19"), str(llvm_bin / "llvm-strip-19"))


def test_explicit_clang_by_path_or_name(tmp_path: Path) -> None:
    bin_dir, elsewhere, record = tmp_path / "bin", tmp_path / "elsewhere", tmp_path / "record"
    fake_clang(bin_dir, record, "clang-19")
    fake_strip(bin_dir, record, "llvm-strip-19")
    fake_strip(bin_dir, record, "llvm-strip-16", "16.0.6")
    chosen = fake_clang(elsewhere, record, "my-clang", "clang version 16.0.6")
    assert find_clang(str(chosen), search_path=str(bin_dir)).strip == str(bin_dir / "llvm-strip-16")
    assert find_clang("clang-19", search_path=str(bin_dir)).major == 19


@pytest.mark.parametrize(
    ("explicit", "expected"),
    [
        ("{tmp}/absent", "--clang {tmp}/absent: no such file"),
        ("{tmp}/plain.txt", "--clang {tmp}/plain.txt: not an executable file"),
        ("no-such-clang", "--clang no-such-clang: not found in PATH"),
        ("{tmp}/bin/gcc", "--clang {tmp}/bin/gcc: not a clang (its --version says: gcc (Debian 12.2.0) 12.2.0)"),
    ],
)
def test_a_bad_explicit_clang_is_one_line(tmp_path: Path, explicit: str, expected: str) -> None:
    (tmp_path / "plain.txt").write_text("not a program\n")
    write_script(tmp_path / "bin", "gcc", 'echo "gcc (Debian 12.2.0) 12.2.0"\n')
    with pytest.raises(BuildError) as error:
        find_clang(explicit.format(tmp=tmp_path), search_path=str(tmp_path / "bin"))
    assert one_line(error) == expected.format(tmp=tmp_path)


def test_no_clang_at_all_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as error:
        find_clang(search_path=str(tmp_path / "empty"))
    assert one_line(error).startswith("clang not found in PATH (looked for clang-<version> and clang)")


# -- Go -----------------------------------------------------------------------------------------


def test_go_of_the_version_go_mod_asks_for(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_go(bin_dir, tmp_path / "record", "go1.26.8")
    tool = find_go(None, (1, 26, 0), "wasm go/program.go", search_path=str(bin_dir))
    assert (tool.version, tool.text) == ((1, 26, 8), "go1.26.8")


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (None, "wasm go/program.go: go not found in PATH; the module needs Go >= 1.26.0 "
               "(install it or pass --go PATH)"),
        ("go1.19.8", "wasm go/program.go: {bin}/go is go1.19.8; the module's go.mod needs Go >= 1.26.0 "
                     "(GOTOOLCHAIN=local, as ig's builder; install it or pass --go PATH)"),
    ],
)
def test_missing_or_old_go_is_one_line(tmp_path: Path, found: str | None, expected: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if found is not None:
        fake_go(bin_dir, tmp_path / "record", found)
    with pytest.raises(BuildError) as error:
        find_go(None, (1, 26, 0), "wasm go/program.go", search_path=str(bin_dir))
    assert one_line(error) == expected.format(bin=bin_dir)


def test_explicit_go_is_used_instead_of_path(tmp_path: Path) -> None:
    fake_go(tmp_path / "old", tmp_path / "record", "go1.19.8")
    new = fake_go(tmp_path / "new", tmp_path / "record", "go1.27.1")
    assert find_go(str(new), (1, 26, 0), "w", search_path=str(tmp_path / "old")).path == str(new)


# -- Rust ---------------------------------------------------------------------------------------


def test_cargo_with_the_wasm_target(tmp_path: Path) -> None:
    rust = fake_rust(tmp_path / "bin", tmp_path / "record", "demo")
    tool = find_cargo(None, None, tmp_path, "wasm rust/src/lib.rs", search_path=str(tmp_path / "bin"))
    assert (tool.path, tool.version, tool.text) == (str(rust.cargo), (1, 95, 0), "cargo 1.95.0 (fake 2026-01-01)")


@pytest.mark.parametrize(
    ("version", "with_target", "rust_version", "expected"),
    [
        ("1.63.0", True, None, "wasm x: {bin}/cargo is cargo 1.63.0; the crate needs Rust >= 1.78.0 with the "
                               "wasm32-wasip1 target"),
        ("1.80.0", True, (1, 85, 0), "wasm x: {bin}/cargo is cargo 1.80.0; the crate needs Rust >= 1.85.0 with "
                                     "the wasm32-wasip1 target"),
        ("1.95.0", False, None, "wasm x: cargo 1.95.0 has no wasm32-wasip1 standard library in {bin}/sysroot; the "
                                "crate needs Rust >= 1.78.0 with the wasm32-wasip1 target (rustup target add "
                                "wasm32-wasip1)"),
    ],
)
def test_old_cargo_or_missing_target_is_one_line(
    tmp_path: Path, version: str, with_target: bool, rust_version: tuple[int, int, int] | None, expected: str
) -> None:
    bin_dir = tmp_path / "bin"
    fake_rust(bin_dir, tmp_path / "record", "demo", version, with_wasm_target=with_target)
    with pytest.raises(BuildError) as error:
        find_cargo(None, rust_version, tmp_path, "wasm x", search_path=str(bin_dir))
    assert one_line(error) == expected.format(bin=bin_dir)


def test_no_cargo_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as error:
        find_cargo(None, None, tmp_path, "wasm x", search_path=str(tmp_path))
    assert one_line(error) == ("wasm x: cargo not found in PATH; the crate needs Rust >= 1.78.0 with the "
                               "wasm32-wasip1 target (install it or pass --cargo PATH)")


def test_a_clang_whose_name_and_version_disagree_is_refused(tmp_path: Path) -> None:
    """A clang-<N> found in PATH is asked for its version while it compiles; the answer must match N."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    fake_clang(bin_dir, record, "clang-19", "clang version 18.1.8")
    fake_strip(bin_dir, record, "llvm-strip-19")
    clang = find_clang(search_path=str(bin_dir))
    assert (clang.major, clang.strip) == (19, str(bin_dir / "llvm-strip-19"))
    with pytest.raises(BuildError) as error:
        clang.version  # noqa: B018
    assert one_line(error) == (f"{bin_dir}/clang-19 says it is clang 18, not 19 "
                               "(its --version: clang version 18.1.8)")


def _wait_for_exit(pid: int, seconds: float) -> bool:
    """True once process ``pid`` (not our child) has exited, False if it still runs after ``seconds``."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], seconds)[0])
    finally:
        os.close(pidfd)


def _kill_left_behind(pidfile: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_a_tool_that_answers_is_not_held_by_a_process_it_left_holding_its_output(tmp_path: Path) -> None:
    """The version is read when the tool exits, not when the last holder of its output closes it."""
    pidfile = tmp_path / "grandchild"
    tool = write_script(tmp_path / "bin", "clang-19", f"""
echo "clang version 19.1.7"
sleep 60 &
echo $! > {shlex.quote(str(pidfile))}
""")
    try:
        assert tool_output([str(tool), "--version"], "clang", timeout=3) == "clang version 19.1.7\n"
    finally:
        _kill_left_behind(pidfile)


def test_a_tool_that_does_not_answer_is_killed_with_what_it_started(tmp_path: Path) -> None:
    """On the timeout the tool's whole process group goes, also a child holding its output open."""
    pidfile = tmp_path / "grandchild"
    tool = write_script(tmp_path / "bin", "clang-19", f"""
sleep 60 &
echo $! > {shlex.quote(str(pidfile))}
wait
""")
    try:
        with pytest.raises(BuildError) as error:
            tool_output([str(tool), "--version"], "clang", timeout=1)
        assert one_line(error) == f"clang: {tool} --version did not answer within 1 s"
        assert _wait_for_exit(int(pidfile.read_text()), 3), "the tool's child outlived the timeout"
    finally:
        _kill_left_behind(pidfile)
