"""``image export`` and ``image import``: OCI-layout tarballs, plain or zstd-compressed.

Export is deterministic (sorted members, zero mtimes, fixed modes and owners). Import never
extracts to the file system: every member is streamed through the store's verifying ingest
(:mod:`.ingest`) into ``ingest/``, and nothing is published or tagged until the whole archive has
been read and every referenced blob is present with the right digest, so a bad archive leaves the
store unchanged.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Self

import zstandard

from . import mediatypes as mt
from . import reference
from .blobstore import READ_CHUNK, IngestWriter, verify_stream
from .descriptor import Descriptor, GraphBudget, canonical_json, checked_document, children, is_document, walk_graph
from .digest import Digest
from .errors import GadgetStoreError, IntegrityError, InvalidArchive
from .gojson import go_loads
from .importlimits import ImportBudget, Verdict
from .resolve import resolve
from .store import OCI_LAYOUT_BYTES, Store
from .userpath import open_input, open_output

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ALLOWED_DIRS = {"blobs", "blobs/sha256", "blobs/sha512"}
MAX_METADATA_FILE = mt.MAX_MANIFEST_BYTES


# -- export ----------------------------------------------------------------------------------------


@dataclass
class ExportPlan:
    """What goes into an export: index.json entries and the blobs they reach."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    blobs: dict[Digest, Descriptor] = field(default_factory=dict)


def plan_export(store: Store, refs: list[str]) -> ExportPlan:
    """Each image with its whole graph and the signatures attached to anything in it.

    ``refs`` are what the user typed (see :mod:`.resolve`): a name is exported under its tag, an
    image named by its digest as an untagged entry (the archive then names no tag for it).
    """
    plan = ExportPlan()
    tagged: dict[str, Descriptor] = {}
    untagged: dict[Digest, Descriptor] = {}
    for ref in refs:
        found = resolve(store, ref)
        if found.via_tag is not None:
            tagged[found.via_tag] = found.descriptor
        else:
            untagged[found.digest] = found.descriptor.bare()
    for ref, desc in tagged.items():
        plan.blobs.update(store.walk_image(desc, f"image {ref}"))
    for desc in untagged.values():
        plan.blobs.update(store.walk_image(desc, f"image {desc.digest}"))
    signatures = {}
    for sig_ref in store.tags():
        subj = reference.signature_tag_subject(sig_ref)
        if subj is not None and subj in plan.blobs:
            signatures[sig_ref] = store.resolve(sig_ref)
    pinned = [pin for pin in store.pins() if store.subject_of(pin) in plan.blobs]
    for sig_ref, desc in signatures.items():
        plan.blobs.update(store.walk_image(desc, f"signature {sig_ref}"))
    for pin in pinned:
        plan.blobs.update(store.walk_image(pin, f"referrer {pin.digest}"))
    tagged_digests = {desc.digest for desc in tagged.values()} | {pin.digest for pin in pinned}
    tagged.update(signatures)
    for ref, desc in tagged.items():
        entry = desc.to_json()
        entry["annotations"] = {**desc.annotations, mt.ANNOTATION_REF_NAME: ref}
        plan.entries.append(entry)
    plan.entries.extend(pin.to_json() for pin in pinned)
    plan.entries.extend(desc.to_json() for digest, desc in untagged.items() if digest not in tagged_digests)
    plan.entries.sort(key=lambda e: (e["digest"], e.get("annotations", {}).get(mt.ANNOTATION_REF_NAME, "")))
    return plan


def _tar_info(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write_export(store: Store, plan: ExportPlan, out: IO[bytes]) -> None:
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": plan.entries}
    index_bytes = canonical_json(index)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for digest in sorted(plan.blobs, key=lambda d: (d.algorithm, d.hex)):
            with store.blobs.open(digest) as blob:
                size = os.fstat(blob.fileno()).st_size
                tar.addfile(_tar_info(f"blobs/{digest.algorithm}/{digest.hex}", size, 0o444), blob)
        tar.addfile(_tar_info("index.json", len(index_bytes), 0o644), io.BytesIO(index_bytes))
        tar.addfile(_tar_info("oci-layout", len(OCI_LAYOUT_BYTES), 0o644), io.BytesIO(OCI_LAYOUT_BYTES))


def export_images(store: Store, refs: list[str], destination: Path) -> None:
    """Write the archive to ``destination`` as :func:`~.userpath.open_output` writes a path the user names.

    Nothing is opened before every image is found, so a bad name leaves no file and blocks on no pipe.
    """
    plan = plan_export(store, refs)
    compress = destination.name.endswith(".tar.zst")
    with open_output(destination, 0o644) as out:
        if compress:
            cctx = zstandard.ZstdCompressor(level=3, threads=0)
            with cctx.stream_writer(out, closefd=False) as zout:
                write_export(store, plan, zout)
        else:
            write_export(store, plan, out)


# -- import ----------------------------------------------------------------------------------------


MAX_HEADER_EXTENSION = 1024 * 1024
"""Longest pax header or GNU long name accepted (tarfile reads them into memory whole; real ones
are under a KB)."""
_HEADER_EXTENSIONS = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                                tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header whose extension (pax header, GNU long name) is refused when it claims to be huge."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        header = super().frombuf(buf, encoding, errors)
        if header.type in _HEADER_EXTENSIONS and header.size > MAX_HEADER_EXTENSION:
            raise InvalidArchive(f"archive member {header.name!r}: its {header.size}-byte extended header is "
                                 f"longer than the {MAX_HEADER_EXTENSION} bytes allowed")
        return header


class _SniffedStream(io.RawIOBase):
    """The bytes read to recognise the format, then the rest: a pipe cannot seek back."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def _open_archive_stream(raw: BinaryIO) -> BinaryIO:
    """Plain or zstd, decided by the first bytes rather than by the file name. A file is read from
    its start on every pass; a pipe once, with the sniffed bytes put back in front."""
    if raw.seekable():
        raw.seek(0)
        head = raw.read(len(ZSTD_MAGIC))
        raw.seek(0)
        stream: BinaryIO = raw
    else:
        head = raw.read(len(ZSTD_MAGIC))
        stream = io.BufferedReader(_SniffedStream(head, raw), buffer_size=READ_CHUNK)
    if head == ZSTD_MAGIC:
        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True, closefd=False)
    return stream


def _member_name(name: str) -> str:
    """``path.Clean`` the name and refuse anything that could leave the layout."""
    if not name or "\x00" in name or name.startswith("/") or "\\" in name:
        raise InvalidArchive(f"archive member {name!r}: absolute or malformed path")
    parts = name.split("/")
    if ".." in parts:
        raise InvalidArchive(f"archive member {name!r}: path traversal")
    cleaned = posixpath.normpath(name)
    return "" if cleaned == "." else cleaned


def _blob_digest(name: str) -> Digest | None:
    """The digest a ``blobs/<alg>/<hex>`` member holds; None for any other (cleaned) name."""
    if not name.startswith("blobs/") or name.count("/") != 2:
        return None
    _, alg, hexpart = name.split("/")
    try:
        return Digest.parse(f"{alg}:{hexpart}")
    except GadgetStoreError as err:
        raise InvalidArchive(f"archive member {name!r}: {err}") from None


@dataclass
class _Staged:
    """What the archive brought: small files in memory, blobs sealed in ingest/ or already stored."""

    layout: bytes | None = None
    index: bytes | None = None
    entries: list[Descriptor] = field(default_factory=list)
    sealed: dict[Digest, IngestWriter] = field(default_factory=dict)
    already_stored: set[Digest] = field(default_factory=set)
    deferred: dict[Digest, str] = field(default_factory=dict)
    """Blob members skipped so far (see :mod:`.importlimits`): digest → member name."""

    def abort(self) -> None:
        for writer in self.sealed.values():
            writer.abort()

    def is_available(self, store: Store, digest: Digest) -> bool:
        return digest in self.sealed or digest in self.already_stored or store.blobs.has(digest)


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.size > MAX_METADATA_FILE:
        raise InvalidArchive(f"archive member {member.name}: larger than {MAX_METADATA_FILE} bytes")
    f = tar.extractfile(member)
    assert f is not None
    data = f.read()
    if len(data) != member.size:
        raise InvalidArchive("archive is truncated")
    return data


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(READ_CHUNK):
        yield chunk


def _index_entries(data: bytes) -> list[Descriptor]:
    try:
        index = go_loads(data)
        entries = index["manifests"]
        if not isinstance(entries, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise InvalidArchive("archive index.json is not an OCI image index") from None
    try:
        return [Descriptor.from_json(entry, f"index.json manifests[{i}]") for i, entry in enumerate(entries)]
    except GadgetStoreError as err:
        raise InvalidArchive(str(err)) from None


def _import_ref_name(ref: str) -> str:
    """A tag as the store keeps it: a signature tag as it is, any other name normalised as ``ig``
    normalises what a user types (``trace_open`` is ``ghcr.io/inspektor-gadget/gadget/trace_open:latest``).

    Kept as written, a short name would be a tag that ``image list`` does not show and ``image
    remove`` cannot name, yet it would keep its blobs. A digest reference names no tag.
    """
    if reference.signature_tag_subject(ref) is not None:
        return ref
    try:
        normalized = reference.normalize(ref)
    except GadgetStoreError:
        raise InvalidArchive(f"index.json names an unsupported image reference {ref!r}") from None
    if normalized.digest is not None:
        raise InvalidArchive(f"index.json names {ref!r}, a digest reference, as a tag")
    return str(normalized)


def _tagged_entries(entries: list[Descriptor]) -> dict[str, Descriptor]:
    """The tagged entries of index.json, by normalised tag; each must name an image index or
    manifest, and two names for one tag must name one image."""
    tags: dict[str, Descriptor] = {}
    for desc in entries:
        ref = desc.annotations.get(mt.ANNOTATION_REF_NAME)
        if not ref:
            continue
        if not is_document(desc):
            raise InvalidArchive(f"index.json tags {ref!r} with a blob of type {desc.media_type or '(none)'}, "
                                 "not an image index or manifest")
        rest = {k: v for k, v in desc.annotations.items() if k != mt.ANNOTATION_REF_NAME}
        name = _import_ref_name(ref)
        if name in tags and tags[name].digest != desc.digest:
            raise InvalidArchive(f"index.json tags {name} twice, as {tags[name].digest} and {desc.digest}")
        tags[name] = desc.with_annotations(rest)
    return tags


class _Stager:
    """Streams the archive's members into ingest/ under the rules of :mod:`.importlimits`: one pass,
    and one more for each layer of deferred members that descriptors read meanwhile refer to."""

    def __init__(self, store: Store, raw: BinaryIO, budget: ImportBudget) -> None:
        self.store = store
        self.raw = raw
        self.budget = budget
        self.staged = _Staged()
        self.documents: dict[Digest, Descriptor] = {}  # descriptors read so far of manifests and indexes

    def run(self) -> _Staged:
        try:
            self._read_pass(None)
            while wanted := {d for d in self.staged.deferred if d in self.budget.expected}:
                self.budget.reserve(self.budget.expected[d] for d in wanted)
                self._read_pass(wanted)
                if wanted & self.staged.deferred.keys():
                    raise InvalidArchive("archive changed while it was being read")
        except (tarfile.TarError, EOFError, zstandard.ZstdError) as err:
            self.staged.abort()
            raise InvalidArchive(f"archive is truncated or not a tar file ({err})") from None
        except BaseException:
            self.staged.abort()
            raise
        return self.staged

    def _read_pass(self, only: set[Digest] | None) -> None:
        """Every member (``only`` None), or just the blobs ``only`` names."""
        seen: set[str] = set()
        with tarfile.open(fileobj=_open_archive_stream(self.raw), mode="r|", tarinfo=_BoundedTarInfo) as tar:
            for member in tar:
                if only is None:
                    self._first_sight(tar, member, seen)
                elif member.isreg():
                    digest = _blob_digest(_member_name(member.name))
                    if digest is not None and digest in only:
                        self._stage_blob(tar, member, digest)

    def _first_sight(self, tar: tarfile.TarFile, member: tarfile.TarInfo, seen: set[str]) -> None:
        name = _member_name(member.name)
        if member.isdir() and (name in _ALLOWED_DIRS or name == ""):
            return
        if not member.isreg():
            raise InvalidArchive(f"archive member {member.name!r}: only regular files are allowed")
        if name in seen:
            raise InvalidArchive(f"archive member {name!r} appears twice")
        seen.add(name)
        digest = _blob_digest(name)
        if name == "oci-layout":
            self.staged.layout = _read_small(tar, member)
        elif name == "index.json":
            self._read_index(_read_small(tar, member))
        elif digest is not None:
            self._stage_blob(tar, member, digest)
        else:
            raise InvalidArchive(f"archive member {name!r} is not part of an OCI image layout")

    def _read_index(self, data: bytes) -> None:
        """Refuse a bad tag at once, and learn the sizes of everything the entries reach."""
        entries = _index_entries(data)
        _tagged_entries(entries)
        self.staged.index, self.staged.entries = data, entries
        self._learn(entries)

    def _stage_blob(self, tar: tarfile.TarFile, member: tarfile.TarInfo, digest: Digest) -> None:
        stored = self.store.blobs.stat(digest)
        verdict = self.budget.admit(digest, member.name, member.size, stored.st_size if stored else None)
        if verdict is Verdict.DEFER:
            self.staged.deferred[digest] = member.name
            return
        self.staged.deferred.pop(digest, None)
        f = tar.extractfile(member)
        assert f is not None
        try:
            if verdict is Verdict.VERIFY:
                verify_stream(_chunks(f), digest, member.size)
                self.staged.already_stored.add(digest)
            else:
                writer = self.store.ingest.writer(digest, member.size)
                try:
                    for chunk in _chunks(f):
                        writer.write(chunk)
                    writer.seal()
                except BaseException:
                    writer.abort()
                    raise
                self.staged.sealed[digest] = writer
        except IntegrityError as err:
            raise InvalidArchive(f"archive member {member.name}: {err}") from None
        desc = self.documents.get(digest)
        if desc is not None:
            self._learn(self._children(desc))

    def _learn(self, descs: list[Descriptor]) -> None:
        """Record the sizes ``descs`` promise, and those of what the documents among them reach."""
        stack = list(descs)
        while stack:
            desc = stack.pop()
            self.budget.expect(desc.digest, desc.size)
            if not is_document(desc) or desc.digest in self.documents:
                continue
            self.documents[desc.digest] = desc
            if self.staged.is_available(self.store, desc.digest):
                stack.extend(self._children(desc))

    def _children(self, desc: Descriptor) -> list[Descriptor]:
        where = f"manifest {desc.digest}"
        try:
            return children(_staged_document(self.store, self.staged, desc), where)
        except GadgetStoreError as err:
            raise InvalidArchive(str(err)) from None


def _staged_document(store: Store, staged: _Staged, desc: Descriptor) -> dict[str, Any]:
    """A manifest or index from the archive (or the store), checked as a pull checks it: refused
    before reading when it claims to be huge, and when its content is not of the descriptor's type."""
    if desc.size > MAX_METADATA_FILE:
        raise InvalidArchive(f"manifest {desc.digest} is {desc.size} bytes, more than {MAX_METADATA_FILE} allowed")
    writer = staged.sealed.get(desc.digest)
    if writer is not None:
        if os.stat(writer.temp_path).st_size != desc.size:
            raise InvalidArchive(f"blob {desc.digest}: descriptor says {desc.size} bytes, archive has another size")
        data = writer.temp_path.read_bytes()
    elif desc.digest in staged.already_stored or store.blobs.has(desc.digest):
        data = store.blobs.read(desc.digest, max_size=MAX_METADATA_FILE)
    else:
        raise InvalidArchive(f"blob {desc.digest} is referenced but missing from the archive")
    where = f"manifest {desc.digest}"
    try:
        doc, _ = checked_document(data, where, expected_type=desc.media_type)
    except GadgetStoreError as err:
        raise InvalidArchive(str(err)) from None
    return doc


def _check_graph(store: Store, staged: _Staged, roots: dict[str, Descriptor]) -> set[Digest]:
    """Every blob the roots (by the name an error gives them) reach must be in the archive (or
    store) with the declared size, each image within the bounds of a pull."""
    listed: dict[Digest, list[Descriptor]] = {}  # each document checked and parsed once, whatever shares it

    def expand(desc: Descriptor) -> list[Descriptor]:
        if desc.digest not in listed:
            listed[desc.digest] = _checked_children(store, staged, desc)
        return listed[desc.digest]

    reached: set[Digest] = set()
    for name, root in roots.items():
        reached.update(walk_graph([root], expand, budget=GraphBudget(name, root)))
    return reached


def _checked_children(store: Store, staged: _Staged, desc: Descriptor) -> list[Descriptor]:
    if desc.digest in staged.sealed:
        size = os.stat(staged.sealed[desc.digest].temp_path).st_size
    elif desc.digest in staged.already_stored or store.blobs.has(desc.digest):
        st = store.blobs.stat(desc.digest)
        size = st.st_size if st else -1
    else:
        raise InvalidArchive(f"blob {desc.digest} is referenced but missing from the archive")
    if size != desc.size:
        raise InvalidArchive(f"blob {desc.digest}: descriptor says {desc.size} bytes, archive has {size}")
    if not is_document(desc):
        return []
    where = f"manifest {desc.digest}"
    try:
        return children(_staged_document(store, staged, desc), where)
    except GadgetStoreError as err:
        raise InvalidArchive(str(err)) from None


def _plan_import(store: Store, staged: _Staged) -> tuple[dict[str, Descriptor], list[Descriptor]]:
    if staged.layout is None:
        raise InvalidArchive("archive has no oci-layout file; is it an OCI image layout?")
    try:
        version = go_loads(staged.layout).get("imageLayoutVersion")
    except (ValueError, AttributeError):
        version = None
    if version != mt.OCI_LAYOUT_VERSION:
        raise InvalidArchive(f"archive oci-layout is not imageLayoutVersion {mt.OCI_LAYOUT_VERSION}")
    if staged.index is None:
        raise InvalidArchive("archive has no index.json")
    tags = _tagged_entries(staged.entries)
    tagged = {desc.digest for desc in tags.values()}
    pins: list[Descriptor] = []
    for desc in staged.entries:
        # Untagged entries matter when they are referrers (signatures) of something, or an untagged
        # image (an export by digest); per-architecture entries (with a platform) are parts of images.
        if (desc.annotations.get(mt.ANNOTATION_REF_NAME) or not is_document(desc)
                or not staged.is_available(store, desc.digest)):
            continue
        if _staged_document(store, staged, desc).get("subject") is not None:
            pins.append(desc)
        elif desc.architecture is None and desc.digest not in tagged:
            pins.append(desc.bare())
    if not tags and not pins:
        raise InvalidArchive("archive index.json tags no image")
    return tags, pins


def _free_space(store: Store) -> tuple[int, int]:
    """Bytes an unprivileged writer may still use on the store's file system, and its block size."""
    st = os.statvfs(store.blobs.ingest_dir)
    return st.f_bavail * st.f_frsize, st.f_frsize or 4096


def import_archive(store: Store, source: Path) -> list[str]:
    """Import every tagged image (and attached signatures); returns the tags, as ``ig`` lists them,
    then each untagged image as ``@<digest>`` (as ``ig image build`` names an untagged build).

    ``source`` is read as a stream (``-`` is standard input, a pipe works). A file may be read more
    than once (see :mod:`.importlimits`); a pipe is read once, bounded by the free space alone.
    """
    with open_input(source, "archive") as raw, store.lease():
        free, block = _free_space(store)
        cap = os.fstat(raw.fileno()).st_size if raw.seekable() else free
        staged = _Stager(store, raw, ImportBudget(free=free, unreferenced_cap=cap, block=block)).run()
        try:
            tags, pins = _plan_import(store, staged)
            named = {**{f"image {ref}": desc for ref, desc in tags.items()},
                     **{f"referrer {pin.digest}": pin for pin in pins}}
            reached = _check_graph(store, staged, named)
            for digest, writer in staged.sealed.items():
                if digest in reached:
                    store.ingest.publish_sealed(writer)  # the transaction syncs blobs/ once, before the tags
            with store.transaction("the imported images were tagged") as txn:
                for ref, desc in sorted(tags.items()):
                    txn.tag(ref, desc)
                for pin in pins:
                    txn.pin(pin)
        finally:
            staged.abort()
    untagged = sorted(f"@{pin.digest}" for pin in pins if store.subject_of(pin) is None)
    # ig lists every imported tag but those ending in cosign's suffix (a referrers tag included)
    return sorted(ref for ref in tags if not ref.endswith(reference.LEGACY_SIGNATURE_SUFFIX)) + untagged
