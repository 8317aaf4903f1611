"""Shared fixtures: the suite's own gadget image in a fresh store, and one signing key per type."""

from __future__ import annotations

from pathlib import Path

import pytest

from gadgetstore.engine.archive import import_archive
from gadgetstore.engine.signatures.signing_keys import KEY_TYPES, SigningKey, generate_private_key
from gadgetstore.engine.store import Store
from tests.support.images import DEMO_IMAGE, ArchivedImage

from .helpers import Image


@pytest.fixture(scope="session")
def keys() -> dict[str, SigningKey]:
    """One key per supported type (RSA at 2048 bits to keep the suite fast)."""
    return {kind: generate_private_key(kind, rsa_bits=2048) for kind in KEY_TYPES}


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    return generate_private_key("ecdsa-p256")


@pytest.fixture
def image(tmp_path: Path, gadget_image: ArchivedImage) -> Image:
    store = Store.open(tmp_path / "store")
    assert import_archive(store, gadget_image.path) == [DEMO_IMAGE]
    root = store.resolve(DEMO_IMAGE)
    assert root == gadget_image.root
    return Image(store, DEMO_IMAGE, root)
