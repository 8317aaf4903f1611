"""What a user's image argument names in the store: a tag, a digest, or a unique digest prefix.

Accepted, as Docker accepts them for local images:

* ``name`` and ``name:tag`` (normalised as ``ig`` does) — the tag in the store;
* ``name@sha256:<hex>`` and ``name:tag@sha256:<hex>`` — the image with that digest. The digest
  wins and the name is informational, as in Docker: the image is found by its digest even when
  the name's tag points elsewhere or the name has no tag at all;
* ``sha256:<hex>``, and a unique prefix of at least 12 hex digits with or without ``sha256:`` —
  the image with that digest. A bare hex string is first a name (``deadbeefcafe`` may be a
  gadget's name) and a digest prefix only when no such tag exists, as Docker does with image IDs.

Images are the targets of image tags and the untagged images (pinned roots that are not
signatures); a digest of anything else (a layer, a signature) names no image. A bare digest is
never a name: ``sha256:…`` is not ``ghcr.io/inspektor-gadget/gadget/sha256:…``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import reference
from .descriptor import Descriptor
from .digest import Digest
from .errors import AmbiguousReference, GadgetStoreError, ImageNotFound, InvalidDigest
from .reference import Reference

if TYPE_CHECKING:
    from .store import Store

MIN_PREFIX = 12
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_QUERY_RE = re.compile(r"(sha256|sha512):([0-9a-fA-F]*)")
_BARE_HEX_RE = re.compile(r"[0-9a-f]{12,128}")


@dataclass(frozen=True)
class DigestQuery:
    """A digest or digest prefix the user typed without a name."""

    algorithm: str | None  # None: bare hex, any algorithm
    hex: str
    maybe_name: bool  # bare hex that is also a valid image name: a tag of that name wins

    @property
    def full(self) -> bool:
        return self.algorithm is not None and len(self.hex) == _HEX_LENGTH[self.algorithm]

    def matches(self, digest: Digest) -> bool:
        if self.algorithm is not None and digest.algorithm != self.algorithm:
            return False
        return digest.hex.startswith(self.hex)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}" if self.algorithm else self.hex


def digest_query(text: str) -> DigestQuery | None:
    """``text`` as a digest or digest prefix; None when it is a name. Raises for a malformed digest."""
    match = _DIGEST_QUERY_RE.fullmatch(text)
    if match is not None:
        algorithm, hexpart = match.groups()
        if hexpart != hexpart.lower():
            raise InvalidDigest(f"invalid digest {text!r}: hex digits must be lowercase")
        if len(hexpart) > _HEX_LENGTH[algorithm]:
            raise InvalidDigest(f"invalid digest {text!r}: {algorithm} has {_HEX_LENGTH[algorithm]} hex digits")
        if len(hexpart) < MIN_PREFIX:
            raise InvalidDigest(f"digest prefix {text!r} is too short: give at least {MIN_PREFIX} hex digits")
        return DigestQuery(algorithm, hexpart, maybe_name=False)
    if _BARE_HEX_RE.fullmatch(text):
        full_length = len(text) in _HEX_LENGTH.values()
        algorithm = "sha256" if len(text) == 64 else ("sha512" if len(text) == 128 else None)
        # 64 hex digits are never a name (Docker: "cannot specify 64-byte hexadecimal strings")
        return DigestQuery(algorithm, text, maybe_name=not full_length)
    return None


def is_digest_only(text: str) -> bool:
    """True when ``text`` is a digest or digest prefix typed without a name (never pulled)."""
    try:
        query = digest_query(text)
    except GadgetStoreError:
        return True
    return query is not None and not query.maybe_name


@dataclass(frozen=True)
class Resolved:
    """The image a user's argument names, and how it was named."""

    typed: str
    descriptor: Descriptor
    reference: Reference | None  # the name as normalised (tag and/or digest); None for a digest alone
    via_tag: str | None  # the tag it was found through; None when found by digest
    tags: tuple[str, ...]  # every image tag of this digest, sorted

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def repositories(self) -> list[str]:
        """The repositories that tag this digest, sorted."""
        return sorted({reference.parse(tag).repository for tag in self.tags})

    def repository(self, purpose: str) -> str:
        """The repository this image is known by: the typed name's, else the only one that tags it."""
        if self.reference is not None:
            return self.reference.repository
        repos = self.repositories
        if len(repos) == 1:
            return repos[0]
        if not repos:
            raise ImageNotFound(f"image {self.typed} has no name to {purpose}: give NAME@{self.digest}")
        raise AmbiguousReference(
            f"image {self.typed} is tagged in several repositories ({', '.join(repos)}); "
            f"give NAME@{self.digest} to {purpose}"
        )


@dataclass(frozen=True)
class StoreImages:
    """The images of a store, by digest: the targets of image tags and the untagged images."""

    by_digest: dict[Digest, Descriptor]
    tags_of: dict[Digest, tuple[str, ...]]
    untagged: frozenset[Digest]

    @classmethod
    def read(cls, store: Store, untagged: bool = True) -> StoreImages:
        """The store's images; without ``untagged`` only the tagged ones (no pinned blob is read)."""
        by_digest: dict[Digest, Descriptor] = {}
        tags_of: dict[Digest, list[str]] = {}
        for tag in store.tags():
            if not is_image_tag(tag):
                continue
            desc = store.lookup(tag)
            if desc is not None:
                by_digest.setdefault(desc.digest, desc)
                tags_of.setdefault(desc.digest, []).append(tag)
        pinned = set()
        for image in store.untagged_images(present_only=False) if untagged else ():
            if image.digest not in tags_of:
                by_digest.setdefault(image.digest, image)
                pinned.add(image.digest)
        return cls(by_digest, {d: tuple(sorted(t)) for d, t in tags_of.items()}, frozenset(pinned))

    def matching(self, query: DigestQuery) -> list[Digest]:
        return sorted(d for d in self.by_digest if query.matches(d))

    def describe(self, digest: Digest) -> str:
        tags = self.tags_of.get(digest)
        return f"{digest} ({', '.join(tags) if tags else 'untagged'})"


def is_image_tag(tag: str) -> bool:
    """A tag naming an image: a full reference as ig normalises it (not ``sha256-<hex>.sig``)."""
    try:
        return str(reference.normalize(tag)) == tag
    except GadgetStoreError:
        return False


def lookup(store: Store, text: str) -> Resolved | None:
    """The image ``text`` names, or None when the store has none; raises for a bad or ambiguous argument."""
    query = digest_query(text)
    if query is not None and query.maybe_name:
        by_name = _by_tag(store, text)
        if by_name is not None:
            return by_name
    if query is not None:
        return _by_digest(store, text, query, None)
    ref = reference.normalize(text)
    if ref.digest is not None:
        return _by_digest(store, text, DigestQuery(ref.digest.algorithm, ref.digest.hex, False), ref)
    return _by_tag(store, text)


def resolve(store: Store, text: str) -> Resolved:
    """As :func:`lookup`, raising ImageNotFound when the store has no such image."""
    found = lookup(store, text)
    if found is None:
        raise ImageNotFound(f"image {text!r} not found in the store")
    return found


def _by_tag(store: Store, text: str) -> Resolved | None:
    try:
        ref = reference.normalize(text)
    except GadgetStoreError:
        return None
    desc = store.lookup(str(ref))
    if desc is None:
        return None
    images = StoreImages.read(store, untagged=False)
    return Resolved(text, desc, ref, str(ref), images.tags_of.get(desc.digest, ()))


def _by_digest(store: Store, text: str, query: DigestQuery, ref: Reference | None) -> Resolved | None:
    images = StoreImages.read(store)
    found = images.matching(query)
    if len(found) > 1:
        raise AmbiguousReference(
            f"digest prefix {str(query)!r} is ambiguous; it matches {_listing(images, found)}: give more digits"
        )
    if not found:
        return None
    digest = found[0]
    return Resolved(text, images.by_digest[digest], ref, None, images.tags_of.get(digest, ()))


def _listing(images: StoreImages, digests: Iterable[Digest]) -> str:
    return "; ".join(images.describe(d) for d in digests)
