"""What a path in the FUSE view is, independently of pyfuse3 and of inode numbers.

A node's ``key`` names the object it shows. Everything below an image directory is keyed by the
image's path *and* root digest, so a re-tag gives new keys (and new inodes) instead of changing
what an inode the kernel already caches would read. Blob-backed files are keyed by digest and
modification time: every path to the same blob with the same time (the short and full name of an
image, its ``by-digest`` entry) is one inode, so they share one page cache.

``mtime_ns`` is what ``stat`` shows (None: the time of the mount). Everything in an image's
directory carries the image's time, so ``ls -lt`` orders images by age.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Hashable
from dataclasses import dataclass

from gadgetstore.engine.descriptor import Descriptor
from gadgetstore.engine.digest import Digest

NodeKey = tuple[Hashable, ...]


class Kind(enum.Enum):
    ROOT = "root"
    NAMESPACE = "ns"  # registry, repository path or short-name components
    IMAGE = "image"  # one tag (or by-digest entry): digest, created, index.json, …
    ARCHES = "arches"  # <image>/arch
    ARCH = "arch"  # <image>/arch/<arch>
    EXTRA = "extra"  # …/extra-info
    EXTRA_DIR = "extra-dir"  # …/extra-info/programs, …/extra-info/raw
    STORE = "store"  # .store: the store's insides
    PENDING = "pending"  # a path that pull on access may still complete: nothing to list yet
    DIGESTS = "by-digest"
    DIGEST_ALG = "by-digest-alg"
    BLOBS = "blobs"
    BLOB_ALG = "blobs-alg"
    FILE = "file"


TRACKED_KINDS = frozenset({Kind.ROOT, Kind.NAMESPACE, Kind.PENDING, Kind.DIGEST_ALG})
"""Directories whose entries follow the journal: the kernel's cached names there get invalidated."""

VOLATILE_KINDS = frozenset({Kind.DIGEST_ALG, Kind.BLOB_ALG})
"""Directories whose entries may vanish without a journal change (gc); cached only briefly."""


@dataclass(frozen=True)
class ImageRef:
    """An image as one directory shows it: ``typed`` is the name the extra-info is computed for."""

    typed: str
    root: Descriptor
    committed_ns: int | None = None
    """When the tag was committed (for a ``by-digest`` entry: its first tag), if the journal says."""


@dataclass(frozen=True, eq=False)
class Node:
    key: NodeKey
    kind: Kind
    path: tuple[str, ...]
    size: int = 0
    blob: Digest | None = None
    data: bytes | None = None
    image: ImageRef | None = None
    arch: str | None = None
    mtime_ns: int | None = None

    @property
    def is_dir(self) -> bool:
        return self.kind is not Kind.FILE


ROOT_KEY: NodeKey = ("root",)
ROOT_NODE = Node(ROOT_KEY, Kind.ROOT, ())

_INODE_MASK = (1 << 63) - 1


def inode_hint(key: NodeKey) -> int:
    """A deterministic 63-bit inode number for a key, so an object keeps its number across forgets."""
    raw = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    ino = int.from_bytes(raw, "big") & _INODE_MASK
    return ino if ino > 1 else ino + 2


def blob_file(path: tuple[str, ...], desc_digest: Digest, size: int, mtime_ns: int | None) -> Node:
    return Node(("blob", str(desc_digest), mtime_ns), Kind.FILE, path, size=size, blob=desc_digest, mtime_ns=mtime_ns)


def data_file(path: tuple[str, ...], identity: Hashable, data: bytes, mtime_ns: int | None) -> Node:
    return Node(("data", path, identity), Kind.FILE, path, size=len(data), data=data, mtime_ns=mtime_ns)
