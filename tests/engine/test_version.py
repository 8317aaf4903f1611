"""engine/version.py: the version line ``ig version`` prints (cmd/common/version.go, blang/semver)."""

from __future__ import annotations

import pytest

from gadgetstore.engine.version import ig_version_line


@pytest.mark.parametrize(("version", "line"), [
    ("0.1.0", "v0.1.0"),
    ("v0.55.0-55-gaeac857bd-dirty", "v0.55.0-55-gaeac857bd-dirty"),  # what the real ig v0.55.0-55 prints
    ("1.2", "v1.2.0"),  # blang/semver ParseTolerant pads a short version
    ("2", "v2.0.0"),
    (" 1.2.3+meta ", "v1.2.3+meta"),
    ("0.2.0.dev1", "v0.2.0.dev1"),  # not semver: shown as it is (ig would print v0.0.0)
])
def test_version_line_follows_semver_parse_tolerant(version: str, line: str) -> None:
    assert ig_version_line(version) == line
