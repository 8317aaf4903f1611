"""A full disk mid-import: a clear error, nothing half-written, the store still opens and checks clean."""

import os
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
    """A 128 KiB tmpfs, filled up later by :func:`leave_room_for_half`."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def leave_room_for_half(mnt: Path, image: ArchivedImage) -> None:
    """Fill ``mnt`` until half of the image's blobs fit: the store opens, the import runs out of space midway."""
    wanted = sum(len(data) for data in image.blobs.values()) // 2
    stat = os.statvfs(mnt)
    free = stat.f_bavail * stat.f_frsize
    assert free > wanted
    (mnt / "filler").write_bytes(b"\0" * (free - wanted))
    stat = os.statvfs(mnt)
    assert stat.f_bavail * stat.f_frsize <= wanted


def test_import_on_a_full_disk_changes_nothing(tiny_fs: Path, gadget_image: ArchivedImage) -> None:
    store = Store.open(tiny_fs / "store")
    leave_room_for_half(tiny_fs, gadget_image)
    before = sorted(str(p.relative_to(tiny_fs)) for p in tiny_fs.rglob("*"))
    with pytest.raises(OSError) as info:
        import_archive(store, gadget_image.path)
    assert info.value.errno == 28  # ENOSPC
    assert sorted(str(p.relative_to(tiny_fs)) for p in tiny_fs.rglob("*")) == before
    reopened = Store.open(tiny_fs / "store")
    assert reopened.tags() == []
    assert fsck(reopened).clean


def test_cli_reports_a_full_disk_in_one_line(tiny_fs: Path, gadget_image: ArchivedImage) -> None:
    from click.testing import CliRunner

    from gadgetstore.cli.main import cli

    Store.open(tiny_fs / "s")
    leave_room_for_half(tiny_fs, gadget_image)
    result = CliRunner().invoke(cli, ["--store", str(tiny_fs / "s"), "image", "import", str(gadget_image.path)])
    assert result.exit_code == 1
    assert result.stderr == "Error: no space left on device; nothing was changed in the store\n"
