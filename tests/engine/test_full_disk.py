"""A full disk mid-import: a clear error, nothing half-written, the store still opens and checks clean."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gadgetstore.engine.archive import import_archive
from gadgetstore.engine.fsck import fsck
from gadgetstore.engine.store import Store
from tests.support.images import ArchivedImage


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 128 KiB tmpfs, filled up later by :func:`leave_room`."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def free_bytes(mnt: Path) -> int:
    stat = os.statvfs(mnt)
    return stat.f_bavail * stat.f_frsize


def leave_room(mnt: Path, room: int) -> None:
    """Fill ``mnt`` until at most ``room`` bytes are free."""
    free = free_bytes(mnt)
    assert free > room
    (mnt / "filler").write_bytes(b"\0" * (free - room))
    assert free_bytes(mnt) <= room


def rooms_too_small(mnt: Path, image: ArchivedImage) -> list[int]:
    """Free space from none up to less than the image's blobs need: the disk fills up in each blob in turn."""
    page = os.statvfs(mnt).f_frsize
    pages = sum(-(-len(data) // page) for data in image.blobs.values())
    return [n * page for n in range(pages)]


def test_import_on_a_full_disk_changes_nothing(tiny_fs: Path, gadget_image: ArchivedImage) -> None:
    for room in rooms_too_small(tiny_fs, gadget_image):
        store = Store.open(tiny_fs / "store")
        leave_room(tiny_fs, room)
        before = sorted(str(p.relative_to(tiny_fs)) for p in tiny_fs.rglob("*"))
        with pytest.raises(OSError) as info:
            import_archive(store, gadget_image.path)
        assert info.value.errno == 28, room  # ENOSPC
        assert sorted(str(p.relative_to(tiny_fs)) for p in tiny_fs.rglob("*")) == before, room
        reopened = Store.open(tiny_fs / "store")
        assert reopened.tags() == []
        assert fsck(reopened).clean
        shutil.rmtree(tiny_fs / "store")
        os.unlink(tiny_fs / "filler")


def test_cli_reports_a_full_disk_in_one_line(tiny_fs: Path, gadget_image: ArchivedImage) -> None:
    from click.testing import CliRunner

    from gadgetstore.cli.main import cli

    Store.open(tiny_fs / "s")
    leave_room(tiny_fs, sum(len(data) for data in gadget_image.blobs.values()) // 2)
    result = CliRunner().invoke(cli, ["--store", str(tiny_fs / "s"), "image", "import", str(gadget_image.path)])
    assert result.exit_code == 1
    assert result.stderr == "Error: no space left on device; nothing was changed in the store\n"
