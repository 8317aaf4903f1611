"""A full disk: refused before writing when it can be foreseen, and otherwise every message is true.

The file systems are size-limited tmpfs mounts (root only; CI runs as root). tmpfs hands out whole
pages: a journal append that fits in the journal's last page still succeeds on a full disk, while
a new index.json cannot be written, which is how a tag ends up recorded but index.json behind.
"""

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gadgetstore.engine.archive import import_archive
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import NotEnoughSpace
from gadgetstore.engine.fsck import fsck
from gadgetstore.engine.importlimits import FREE_SPACE_MARGIN
from gadgetstore.engine.store import Store
from tests.support.cli import run_in_store as run

PAGE = 4096


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mounts a tmpfs of the given size (``"4m"``) under tmp_path; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CI runs as root)")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        mnt = tmp_path / f"fs{len(mounted)}"
        mnt.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(mnt: Path, leave: int = 0) -> Path:
    """A file that leaves ``leave`` bytes free (whole pages), or with 0 not one byte more."""
    filler = mnt / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            out.write(bytes(free_bytes(mnt) - leave))
            if leave:
                return filler
            for size in (PAGE, 1):
                while True:
                    out.write(bytes(size))
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_import_that_would_not_fit_is_refused_before_writing(tmpfs: Callable[[str], Path],
                                                               gadget_tar: Path) -> None:
    mnt = tmpfs("4m")
    store = Store.open(mnt / "store")
    before = tree(mnt / "store")
    fill(mnt, leave=5 * PAGE)
    with pytest.raises(NotEnoughSpace, match="nothing was changed in the store"):
        import_archive(store, gadget_tar)
    assert free_bytes(mnt) == 5 * PAGE, "not one block was written"
    assert tree(mnt / "store") == before
    assert fsck(Store.open(mnt / "store")).clean


def test_cli_reports_an_import_that_would_not_fit_in_one_line(tmpfs: Callable[[str], Path],
                                                              gadget_tar: Path) -> None:
    mnt = tmpfs("4m")
    Store.open(mnt / "s")
    fill(mnt, leave=FREE_SPACE_MARGIN + 2 * PAGE)  # the first blob fits, the second does not
    code, out, err = run(mnt / "s", "image", "import", str(gadget_tar))
    assert code == 1 and out == ""
    assert err.startswith("Error: not enough free space: the archive's blobs up to blobs/sha256/")
    assert err.endswith("; nothing was changed in the store\n") and err.count("\n") == 1
    assert Store.open(mnt / "s").tags() == [] and list((mnt / "s" / "ingest").iterdir()) == []


def test_a_tag_recorded_on_a_full_disk_is_reported_as_recorded(tmpfs: Callable[[str], Path],
                                                                gadget_tar: Path) -> None:
    mnt = tmpfs("4m")
    store_root = mnt / "s"
    assert run(store_root, "image", "import", str(gadget_tar))[0] == 0
    journal = store_root / "index.journal"
    assert journal.stat().st_size % PAGE + 512 < PAGE, "the tag's record must fit in the journal's last page"
    filler = fill(mnt)
    code, out, err = run(store_root, "image", "tag", "trace_demo", "x.io/copy:1")
    assert code == 1 and out == ""
    assert err == (f"Error: the tag x.io/copy:1 was recorded, but {store_root / 'index.json'} could not be "
                   "rewritten (No space left on device); the index journal has every change, and index.json is "
                   "rewritten from it when the store is next opened for writing\n")
    assert "x.io/copy:1" in Store.open(store_root, readonly=True).tags()
    filler.unlink()
    code, out, _ = run(store_root, "image", "list")
    assert code == 0 and "x.io/copy" in out
    assert b"x.io/copy:1" in (store_root / "index.json").read_bytes()
    assert fsck(Store.open(store_root)).clean


def test_remove_on_a_full_disk_frees_the_space_and_says_so(tmpfs: Callable[[str], Path], gadget_tar: Path) -> None:
    mnt = tmpfs("4m")
    store_root = mnt / "s"
    assert run(store_root, "image", "import", str(gadget_tar))[0] == 0
    fill(mnt)
    code, _, err = run(store_root, "image", "remove", "trace_demo")
    assert (code, err) == (0, "Successfully removed trace_demo\n")
    store = Store.open(store_root)
    assert store.tags() == [] and list(store.blobs.iter_digests()) == []
    assert b"trace_demo" not in (store_root / "index.json").read_bytes()
    assert fsck(store).clean


def test_a_blob_write_that_finds_the_disk_full_leaves_no_ingest_file(tmpfs: Callable[[str], Path]) -> None:
    """Someone else filled the disk after the import's space check: the write fails with ENOSPC,
    and aborting the writer removes its file although closing it fails again on the unwritten rest."""
    mnt = tmpfs("1m")
    store = Store.open(mnt / "s")
    data = os.urandom(1000)  # held in the writer's buffer until the seal flushes it
    writer = store.blobs.writer(Digest.of_bytes(data), len(data))
    fill(mnt)
    with pytest.raises(OSError) as info:
        writer.write(data)
        writer.seal()
    assert info.value.errno == errno.ENOSPC
    writer.abort()
    assert list((mnt / "s" / "ingest").iterdir()) == []
