"""Paths the user names: devices and pipes written into, symlinks followed, regular files replaced whole."""

from __future__ import annotations

import errno
import io
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gadgetstore.engine.errors import StoreError, UserPathError
from gadgetstore.engine.userpath import open_input, open_output, read_input, replaces_regular_file, write_output
from tests.support.special_files import FifoReader, char_device, is_dev_null

NOBODY = 65534


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory of the test's own (conftest puts a home directory into tmp_path)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def listing(*dirs: Path) -> dict[str, list[str]]:
    return {str(d): sorted(os.listdir(d)) for d in dirs}


def test_a_device_is_written_into_and_stays_a_device(work: Path) -> None:
    device = char_device(work / "null")
    link = work / "link"
    link.symlink_to(device)
    write_output(device, b"x" * 300_000)
    write_output(link, b"y", 0o600)
    assert is_dev_null(device), "still the device, with its own mode"
    assert link.is_symlink()
    assert not replaces_regular_file(device)
    assert listing(work) == {str(work): ["link", "null"]}


def test_a_fifo_receives_the_bytes_in_order(work: Path) -> None:
    data = os.urandom(1_000_000)  # several pipe buffers: the writer waits on the reader
    reader = FifoReader(work / "pipe")
    write_output(work / "pipe", data)
    assert reader.join() == data
    assert stat.S_ISFIFO(os.lstat(work / "pipe").st_mode)
    assert listing(work) == {str(work): ["pipe"]}


def test_a_reader_closing_the_fifo_is_one_error_naming_it(work: Path) -> None:
    reader = FifoReader(work / "pipe", stop_after=10)
    with pytest.raises(UserPathError) as info:
        write_output(work / "pipe", os.urandom(2_000_000))
    assert reader.join() != b""
    assert str(info.value) == f"cannot write {work / 'pipe'}: Broken pipe"


@pytest.mark.parametrize(("umask", "mode", "expected"), [(0o077, 0o644, 0o600), (0o022, 0o644, 0o644),
                                                         (0o002, 0o600, 0o600)])
def test_a_new_file_gets_its_mode_less_the_umask(work: Path, umask: int, mode: int, expected: int) -> None:
    """As ig's export (os.Create) and tar make it: a user with umask 077 gets a private file."""
    previous = os.umask(umask)
    try:
        write_output(work / "new", b"data", mode)
        (work / "replaced").write_bytes(b"old")
        os.chmod(work / "replaced", 0o666)
        write_output(work / "replaced", b"data", mode)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(work / "new").st_mode) == expected
    assert stat.S_IMODE(os.stat(work / "replaced").st_mode) == expected


def test_a_symlink_stays_and_its_target_is_replaced_whole(work: Path) -> None:
    (work / "real").mkdir()
    target = work / "real" / "out"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    hop = work / "hop"
    hop.symlink_to("real/out")
    link = work / "link"
    link.symlink_to("hop")
    assert replaces_regular_file(link)
    write_output(link, b"new", 0o600)
    assert os.readlink(link) == "hop" and os.readlink(hop) == "real/out"
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600, "the mode rule holds when replacing too"
    assert listing(work, work / "real") == {str(work): ["hop", "link", "real"],
                                                    str(work / "real"): ["out"]}


def test_a_dangling_symlink_gets_its_target_created(work: Path) -> None:
    (work / "real").mkdir()
    link = work / "link"
    link.symlink_to(work / "real" / "new")
    assert not replaces_regular_file(link)
    write_output(link, b"data")
    assert link.is_symlink() and (work / "real" / "new").read_bytes() == b"data"
    assert listing(work / "real") == {str(work / "real"): ["new"]}


def _directory(work: Path) -> Path:
    (work / "dir").mkdir()
    return work / "dir"


def _loop(work: Path) -> Path:
    (work / "a").symlink_to("b")
    (work / "b").symlink_to("a")
    return work / "a"


def _under_a_file(work: Path) -> Path:
    (work / "file").write_bytes(b"")
    return work / "file" / "out"


@pytest.mark.parametrize(("make", "reason"), [
    (_directory, "it is a directory"),
    (lambda tmp: tmp / "missing" / "out.tar", "No such file or directory"),
    (lambda tmp: (tmp / "to-missing").symlink_to("missing/out") or tmp / "to-missing", "No such file or directory"),
    (_under_a_file, "Not a directory"),
    (_loop, "Too many levels of symbolic links"),
])
def test_unwritable_paths_are_one_error_naming_them(work: Path, make: Callable[[Path], Path],
                                                     reason: str) -> None:
    path = make(work)
    before = sorted(str(p) for p in work.rglob("*"))
    with pytest.raises(UserPathError) as info:
        write_output(path, b"data")
    assert str(info.value) == f"cannot write {path}: {reason}"
    assert sorted(str(p) for p in work.rglob("*")) == before


def test_a_failure_while_writing_keeps_the_old_file_and_its_own_error(work: Path) -> None:
    out = work / "out"
    out.write_bytes(b"old")
    store_error = OSError(errno.EIO, "Input/output error", "/store/blobs/sha256/ab")
    for raised in (StoreError("blob is corrupt"), store_error):
        with pytest.raises(type(raised)) as info, open_output(out) as stream:
            stream.write(b"x" * 1_000_000)
            raise raised
        assert info.value is raised, "an error of the producer is not blamed on the output"
        assert out.read_bytes() == b"old"
        assert listing(work) == {str(work): ["out"]}


def _write_as_nobody(cwd: Path, path: Path) -> str:
    """write_output in a child that enters ``cwd`` and becomes another user; what it raised, or "ok".

    Entering first spares the other user the search permission on pytest's private directories.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        message = "ok"
        try:
            os.chdir(cwd)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            write_output(path, b"data")
        except UserPathError as err:
            message = str(err)
        except BaseException as err:  # any other outcome fails the test
            message = f"unexpected {err!r}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


def test_a_read_only_directory_is_one_error_naming_the_path(work: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to another user needs root (CI runs as root)")
    os.chmod(work, 0o755)
    (work / "ro").mkdir()
    os.chmod(work / "ro", 0o555)
    assert _write_as_nobody(work, Path("ro/out")) == "cannot write ro/out: Permission denied"
    assert os.listdir(work / "ro") == []


@pytest.fixture
def tiny_fs(work: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CI runs as root)")
    mnt = work / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_one_error_naming_the_path(tiny_fs: Path) -> None:
    (tiny_fs / "out").write_bytes(b"old")
    with pytest.raises(UserPathError) as info:
        write_output(tiny_fs / "out", os.urandom(256 * 1024))
    assert str(info.value) == f"cannot write {tiny_fs / 'out'}: No space left on device"
    assert os.listdir(tiny_fs) == ["out"] and (tiny_fs / "out").read_bytes() == b"old"


def test_dash_is_standard_output(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    data = os.urandom(600_000)
    write_output(Path("-"), data)
    assert capsysbinary.readouterr().out == data


def test_dash_is_standard_output_fd_when_it_is_a_pipe() -> None:
    code = ("import sys; from pathlib import Path; from gadgetstore.engine.userpath import write_output; "
            "write_output(Path('-'), bytes(range(256)) * 4000)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert result.stdout == bytes(range(256)) * 4000 and result.stderr == b""


def test_reading_dash_is_standard_input_and_errors_name_the_path(work: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    assert read_input(Path("-"), "key", 100) == b"from stdin"
    (work / "f").write_bytes(b"abc")
    with open_input(work / "f", "key") as source:
        assert source.read() == b"abc"
    with pytest.raises(UserPathError, match=rf"^key {work}/missing does not exist$"):
        read_input(work / "missing", "key", 100)
    with pytest.raises(UserPathError, match=rf"^cannot read key {work}: Is a directory$"):
        read_input(work, "key", 100)
    with pytest.raises(StoreError, match=rf"^key {work}/f is larger than 2 bytes$"):
        read_input(work / "f", "key", 2, StoreError)
