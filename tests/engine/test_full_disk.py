"""A full disk mid-import: a clear error, nothing half-written, the store still opens and checks clean."""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gadgetstore.engine.archive import import_archive
from gadgetstore.engine.fsck import fsck
from gadgetstore.engine.store import Store


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 128 KiB tmpfs: the store fits, trace_open's two 85 KB ELF layers do not."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_import_on_a_full_disk_changes_nothing(tiny_fs: Path, trace_open_tar: Path) -> None:
    store = Store.open(tiny_fs / "store")
    before = sorted(str(p.relative_to(tiny_fs)) for p in tiny_fs.rglob("*"))
    with pytest.raises(OSError) as info:
        import_archive(store, trace_open_tar)
    assert info.value.errno == 28  # ENOSPC
    assert sorted(str(p.relative_to(tiny_fs)) for p in tiny_fs.rglob("*")) == before
    reopened = Store.open(tiny_fs / "store")
    assert reopened.tags() == []
    assert fsck(reopened).clean


def test_cli_reports_a_full_disk_in_one_line(tiny_fs: Path, trace_open_tar: Path) -> None:
    from click.testing import CliRunner

    from gadgetstore.cli.main import cli

    result = CliRunner().invoke(cli, ["--store", str(tiny_fs / "s"), "image", "import", str(trace_open_tar)])
    assert result.exit_code == 1
    assert result.stderr == "Error: no space left on device; nothing was changed in the store\n"
