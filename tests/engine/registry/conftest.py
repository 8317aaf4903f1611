"""Registry fixtures for this directory (the plugin module is tests/support/registry.py)."""

from __future__ import annotations

import sys
from pathlib import Path

_PROJECT = str(Path(__file__).resolve().parents[3])
if _PROJECT not in sys.path:
    sys.path.insert(0, _PROJECT)

from tests.support import registry as _registry  # noqa: E402

anon_registry = _registry.anon_registry
htpasswd_registry = _registry.htpasswd_registry
token_registry = _registry.token_registry
token_server = _registry.token_server
