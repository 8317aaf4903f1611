"""engine/resolve.py: names, name@digest, bare digests and unique prefixes, found in the store only."""

from __future__ import annotations

import pytest

from gadgetstore.engine import mediatypes as mt
from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest
from gadgetstore.engine.errors import AmbiguousReference, ImageNotFound, InvalidDigest, InvalidReference
from gadgetstore.engine.reference import normalize
from gadgetstore.engine.resolve import StoreImages, digest_query, is_digest_only, lookup, resolve
from gadgetstore.engine.store import Store
from tests.support.images import make_gadget_image

OTHER = "sha256:" + "e" * 64


@pytest.mark.parametrize(("text", "expected"), [
    ("trace_open", None),
    ("x.io/a:v1@sha256:" + "a" * 64, None),  # a name with a digest: parsed as a reference
    ("abcdef12345", None),  # 11 hex digits: only a name
    ("sha256:" + "a" * 64, ("sha256", "a" * 64, False)),
    ("sha256:abcdef123456", ("sha256", "abcdef123456", False)),
    ("abcdef123456", (None, "abcdef123456", True)),  # a name first, then a prefix
    ("a" * 64, ("sha256", "a" * 64, False)),  # 64 hex digits are never a name
])
def test_digest_query_tells_digests_from_names(text: str, expected: tuple[str | None, str, bool] | None) -> None:
    query = digest_query(text)
    assert (None if query is None else (query.algorithm, query.hex, query.maybe_name)) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("sha256:abcdef12345", "digest prefix 'sha256:abcdef12345' is too short: give at least 12 hex digits"),
    ("sha256:ABCDEF123456", "hex digits must be lowercase"),
    ("sha256:" + "a" * 65, "sha256 has 64 hex digits"),
])
def test_malformed_digests_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidDigest, match=message):
        digest_query(text)
    assert is_digest_only(text)


def test_a_bare_digest_is_never_an_official_image_name() -> None:
    """``sha256:<hex>`` is a digest, not the official repository ``ghcr.io/inspektor-gadget/gadget/sha256``."""
    with pytest.raises(InvalidReference, match="a digest alone names no repository; give NAME@DIGEST"):
        normalize("sha256:" + "a" * 64)
    with pytest.raises(InvalidReference):
        normalize("sha256:abcdef123456")
    assert str(normalize("sha256:latest")) == "ghcr.io/inspektor-gadget/gadget/sha256:latest"


def test_every_form_finds_the_same_image(store: Store) -> None:
    root = make_gadget_image(store, "x.io/app:v1")
    hexd = root.digest.hex
    for text in ("x.io/app:v1", f"x.io/app@{root.digest}", f"x.io/app:v1@{root.digest}", str(root.digest),
                 f"sha256:{hexd[:12]}", hexd[:12], hexd[:40], hexd):
        found = resolve(store, text)
        assert found.descriptor == root, text
        assert found.tags == ("x.io/app:v1",)
    assert resolve(store, "x.io/app:v1").via_tag == "x.io/app:v1"
    assert resolve(store, str(root.digest)).via_tag is None


def test_the_digest_wins_over_the_names_tag(store: Store) -> None:
    """As Docker: name:tag@digest is the image with that digest; the name is informational."""
    first = make_gadget_image(store, "x.io/app:v1", seed="one")
    second = make_gadget_image(store, "x.io/app:v2", seed="two")
    found = resolve(store, f"x.io/app:v1@{second.digest}")
    assert found.descriptor == second and found.via_tag is None
    assert resolve(store, f"x.io/elsewhere@{first.digest}").descriptor == first
    assert found.repository("sign") == "x.io/app"


def test_a_tag_named_like_a_prefix_wins_over_the_prefix(store: Store) -> None:
    root = make_gadget_image(store, "x.io/app:v1", seed="one")
    prefix = root.digest.hex[:12]
    by_name = make_gadget_image(store, prefix, seed="two")  # ghcr.io/inspektor-gadget/gadget/<prefix>:latest
    assert resolve(store, prefix).descriptor == by_name
    assert resolve(store, f"sha256:{prefix}").descriptor == root


def test_untagged_images_resolve_by_digest_but_signatures_do_not(store: Store) -> None:
    untagged = make_gadget_image(store, "x.io/built:v1", untagged=True)
    assert resolve(store, str(untagged.digest)).tags == ()
    assert StoreImages.read(store).untagged == {untagged.digest}
    layer = next(d for d in store.walk([untagged]).values() if d.media_type == mt.GADGET_EBPF)
    assert lookup(store, str(layer.digest)) is None, "a layer is no image"
    with pytest.raises(ImageNotFound, match=f"image '{OTHER}' not found in the store"):
        resolve(store, OTHER)


@pytest.mark.leaves_damaged_store  # pinned descriptors of absent blobs, made up to share a prefix
def test_an_ambiguous_prefix_lists_the_candidates(store: Store) -> None:
    """Two digests sharing 12 hex digits (fabricated: pinned descriptors of absent blobs)."""
    a = Digest("sha256", "abcdef123456" + "0" * 52)
    b = Digest("sha256", "abcdef123456" + "1" * 52)
    with store.transaction() as txn:
        for digest in (a, b):
            txn.pin(Descriptor(mt.OCI_INDEX, digest, 10))
    with pytest.raises(AmbiguousReference) as err:
        resolve(store, "sha256:abcdef123456")
    assert str(err.value) == (f"digest prefix 'sha256:abcdef123456' is ambiguous; it matches {a} (untagged); "
                              f"{b} (untagged): give more digits")
    assert resolve(store, "abcdef1234560").digest == a


def test_a_digest_alone_needs_exactly_one_repository_to_sign(store: Store) -> None:
    root = make_gadget_image(store, "x.io/app:v1")
    assert resolve(store, str(root.digest)).repository("sign") == "x.io/app"
    with store.transaction() as txn:
        txn.tag("y.io/copy:v1", root)
    with pytest.raises(AmbiguousReference, match=r"tagged in several repositories \(x.io/app, y.io/copy\)"):
        resolve(store, str(root.digest)).repository("sign")
    untagged = make_gadget_image(store, "x.io/u:1", seed="u", untagged=True)
    with pytest.raises(ImageNotFound, match=f"has no name to sign: give NAME@{untagged.digest}"):
        resolve(store, str(untagged.digest)).repository("sign")
