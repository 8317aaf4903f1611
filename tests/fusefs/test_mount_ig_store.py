"""Mounting a store ig made writes nothing to it (``mount`` is a reading command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.igstore import captured_store, tree

from .mounting import mounted

pytestmark = pytest.mark.fuse
X_ROOT = "sha256:793046c55399dec2908a34df342fcd6c5312d23d2661f107349904a3cd6cad30"


def test_mounting_an_ig_store_leaves_it_as_it_was(tmp_path: Path) -> None:
    root = captured_store(tmp_path / "oci-store").root
    before = tree(root)
    with mounted(root, tmp_path / "mnt", tmp_path / "mount.log") as mount:
        image = mount.path / "127.0.0.1:55841" / "x" / "v1"
        assert (image / "digest").read_text() == f"{X_ROOT}\n"
        assert "ebpf.maps" in {p.name for p in (image / "extra-info").iterdir()}
        assert (image / "extra-info" / "oci.tag").read_bytes() == b"v1\n"
        assert (image / "extra-info" / "raw" / "oci.tag").read_bytes() == b"v1"
        assert sorted(p.name for p in (mount.path / ".store" / "by-digest" / "sha256").iterdir())
    assert tree(root) == before
