"""Shared fixtures: the real trace_open image in a fresh store, and one signing key per type."""

from __future__ import annotations

from pathlib import Path

import pytest

from gadgetstore.engine.archive import import_archive
from gadgetstore.engine.signatures.signing_keys import KEY_TYPES, SigningKey, generate_private_key
from gadgetstore.engine.store import Store

from .helpers import TRACE_OPEN, TRACE_OPEN_DIGEST, Image


@pytest.fixture(scope="session")
def keys() -> dict[str, SigningKey]:
    """One key per supported type (RSA at 2048 bits to keep the suite fast)."""
    return {kind: generate_private_key(kind, rsa_bits=2048) for kind in KEY_TYPES}


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    return generate_private_key("ecdsa-p256")


@pytest.fixture
def image(tmp_path: Path, trace_open_tar: Path) -> Image:
    store = Store.open(tmp_path / "store")
    assert import_archive(store, trace_open_tar) == [TRACE_OPEN]
    root = store.resolve(TRACE_OPEN)
    assert str(root.digest) == TRACE_OPEN_DIGEST
    return Image(store, TRACE_OPEN, root)
