"""The auth file is a path the user names: a symlink to it (a dotfiles checkout) stays a symlink."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from gadgetstore.engine.registry.authfile import Credentials, credentials_for, remove_credentials, store_credentials


def test_login_and_logout_write_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "dotfiles").mkdir()
    real = tmp_path / "dotfiles" / "config.json"
    real.write_text('{"auths": {}, "other-tool": 1}\n')
    os.chmod(real, 0o644)
    link = tmp_path / "config.json"
    link.symlink_to(real)
    store_credentials(link, "reg.example", "alice", "secret")
    assert os.readlink(link) == str(real)
    assert credentials_for("reg.example", link) == Credentials("alice", "secret")
    assert json.loads(real.read_text())["other-tool"] == 1
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600
    assert remove_credentials(link, "reg.example")
    assert link.is_symlink() and json.loads(real.read_text())["auths"] == {}
    assert sorted(os.listdir(tmp_path / "dotfiles")) == ["config.json"]
