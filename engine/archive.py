"""``image export`` and ``image import``: OCI-layout tarballs, plain or zstd-compressed.

Export is deterministic (sorted members, zero mtimes, fixed modes and owners). Import never
extracts to the file system: every member is streamed through the verifying ingest into
``ingest/``, and nothing is published or tagged until the whole archive has been read and every
referenced blob is present with the right digest, so a bad archive leaves the store unchanged.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import zstandard

from . import mediatypes as mt
from . import reference
from .blobstore import READ_CHUNK, IngestWriter, verify_stream
from .descriptor import Descriptor, canonical_json, children, is_document, parse_document, walk_graph
from .digest import Digest
from .errors import GadgetStoreError, ImageNotFound, IntegrityError, InvalidArchive
from .fsutil import fsync_dir
from .store import OCI_LAYOUT_BYTES, Store, signature_tag_subject

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
    """Each image with its whole graph and the signatures attached to anything in it."""
    plan = ExportPlan()
    tagged: dict[str, Descriptor] = {}
    for ref in refs:
        tagged[ref] = store.resolve(ref)
    plan.blobs.update(store.walk(tagged.values()))
    for sig_ref in store.tags():
        subj = signature_tag_subject(sig_ref)
        if subj is not None and subj in plan.blobs:
            tagged[sig_ref] = store.resolve(sig_ref)
    pinned = [pin for pin in store.pins() if store.subject_of(pin) in plan.blobs]
    plan.blobs.update(store.walk([*tagged.values(), *pinned], missing_ok=False))
    for ref, desc in tagged.items():
        entry = desc.to_json()
        entry["annotations"] = {**desc.annotations, mt.ANNOTATION_REF_NAME: ref}
        plan.entries.append(entry)
    plan.entries.extend(pin.to_json() for pin in pinned)
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
    """Write the archive next to ``destination`` and rename it into place when complete."""
    plan = plan_export(store, refs)
    compress = destination.name.endswith(".tar.zst")
    parent = destination.parent if str(destination.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            if compress:
                cctx = zstandard.ZstdCompressor(level=3, threads=0)
                with cctx.stream_writer(raw, closefd=False) as zout:
                    write_export(store, plan, zout)
            else:
                write_export(store, plan, raw)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(parent)


# -- import ----------------------------------------------------------------------------------------


class _Rewound:
    """``rest`` with ``head`` (bytes already read from it) put back in front: a pipe cannot seek."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size < 0:
            data, self._head = self._head + self._rest.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data


def _open_archive_stream(raw: BinaryIO) -> BinaryIO:
    """Plain or zstd, decided by the first bytes rather than by the file name (the source may be a pipe)."""
    head = raw.read(4)
    source: Any = raw
    if raw.seekable():
        raw.seek(0)
    else:
        source = _Rewound(head, raw)
    if head == ZSTD_MAGIC:
        return zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    return source


def _member_name(name: str) -> str:
    """``path.Clean`` the name and refuse anything that could leave the layout."""
    if not name or "\x00" in name or name.startswith("/") or "\\" in name:
        raise InvalidArchive(f"archive member {name!r}: absolute or malformed path")
    parts = name.split("/")
    if ".." in parts:
        raise InvalidArchive(f"archive member {name!r}: path traversal")
    cleaned = posixpath.normpath(name)
    return "" if cleaned == "." else cleaned


@dataclass
class _Staged:
    """What the archive brought: small files in memory, blobs sealed in ingest/ or already stored."""

    layout: bytes | None = None
    index: bytes | None = None
    sealed: dict[Digest, IngestWriter] = field(default_factory=dict)
    already_stored: set[Digest] = field(default_factory=set)

    def abort(self) -> None:
        for writer in self.sealed.values():
            writer.abort()


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


def _stage_members(store: Store, raw: BinaryIO) -> _Staged:
    staged = _Staged()
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=_open_archive_stream(raw), mode="r|") as tar:
            for member in tar:
                name = _member_name(member.name)
                if member.isdir() and (name in _ALLOWED_DIRS or name == ""):
                    continue
                if not member.isreg():
                    raise InvalidArchive(f"archive member {member.name!r}: only regular files are allowed")
                if name in seen:
                    raise InvalidArchive(f"archive member {name!r} appears twice")
                seen.add(name)
                if name == "oci-layout":
                    staged.layout = _read_small(tar, member)
                elif name == "index.json":
                    staged.index = _read_small(tar, member)
                elif name.startswith("blobs/") and name.count("/") == 2:
                    _, alg, hexpart = name.split("/")
                    try:
                        digest = Digest.parse(f"{alg}:{hexpart}")
                    except GadgetStoreError as err:
                        raise InvalidArchive(f"archive member {name!r}: {err}") from None
                    _stage_blob(store, staged, tar, member, digest)
                else:
                    raise InvalidArchive(f"archive member {name!r} is not part of an OCI image layout")
    except (tarfile.TarError, EOFError, zstandard.ZstdError) as err:
        staged.abort()
        raise InvalidArchive(f"archive is truncated or not a tar file ({err})") from None
    except BaseException:
        staged.abort()
        raise
    return staged


def _stage_blob(
    store: Store, staged: _Staged, tar: tarfile.TarFile, member: tarfile.TarInfo, digest: Digest
) -> None:
    f = tar.extractfile(member)
    assert f is not None
    try:
        if store.blobs.has(digest):
            verify_stream(_chunks(f), digest, member.size)
            staged.already_stored.add(digest)
            return
        writer = store.blobs.writer(digest, member.size)
        try:
            for chunk in _chunks(f):
                writer.write(chunk)
            writer.seal()
        except BaseException:
            writer.abort()
            raise
        staged.sealed[digest] = writer
    except IntegrityError as err:
        raise InvalidArchive(f"archive member {member.name}: {err}") from None


def _staged_bytes(store: Store, staged: _Staged, desc: Descriptor) -> bytes:
    """A manifest or index from the archive; refused before reading when it claims to be huge."""
    if desc.size > MAX_METADATA_FILE:
        raise InvalidArchive(f"manifest {desc.digest} is {desc.size} bytes, more than {MAX_METADATA_FILE} allowed")
    writer = staged.sealed.get(desc.digest)
    if writer is not None:
        if os.stat(writer.temp_path).st_size != desc.size:
            raise InvalidArchive(f"blob {desc.digest}: descriptor says {desc.size} bytes, archive has another size")
        return writer.temp_path.read_bytes()
    if desc.digest in staged.already_stored or store.blobs.has(desc.digest):
        return store.blobs.read(desc.digest, max_size=MAX_METADATA_FILE)
    raise InvalidArchive(f"blob {desc.digest} is referenced but missing from the archive")


def _is_available(store: Store, staged: _Staged, digest: Digest) -> bool:
    return digest in staged.sealed or digest in staged.already_stored or store.blobs.has(digest)


def _check_graph(store: Store, staged: _Staged, roots: list[Descriptor]) -> set[Digest]:
    """Every blob the roots reach must be in the archive (or store) with the declared size."""

    def expand(desc: Descriptor) -> list[Descriptor]:
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
            return children(parse_document(_staged_bytes(store, staged, desc), where), where)
        except GadgetStoreError as err:
            raise InvalidArchive(str(err)) from None

    return set(walk_graph(roots, expand))


def _import_ref_name(ref: str) -> str:
    if signature_tag_subject(ref) is not None:
        return ref
    try:
        reference.parse(ref)
    except GadgetStoreError:
        raise InvalidArchive(f"index.json names an unsupported image reference {ref!r}") from None
    return ref


def _plan_import(store: Store, staged: _Staged) -> tuple[dict[str, Descriptor], list[Descriptor]]:
    if staged.layout is None:
        raise InvalidArchive("archive has no oci-layout file; is it an OCI image layout?")
    try:
        version = json.loads(staged.layout).get("imageLayoutVersion")
    except (ValueError, AttributeError):
        version = None
    if version != mt.OCI_LAYOUT_VERSION:
        raise InvalidArchive(f"archive oci-layout is not imageLayoutVersion {mt.OCI_LAYOUT_VERSION}")
    if staged.index is None:
        raise InvalidArchive("archive has no index.json")
    try:
        index = json.loads(staged.index)
        entries = index["manifests"]
        if not isinstance(entries, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise InvalidArchive("archive index.json is not an OCI image index") from None
    tags: dict[str, Descriptor] = {}
    pins: list[Descriptor] = []
    for i, entry in enumerate(entries):
        try:
            desc = Descriptor.from_json(entry, f"index.json manifests[{i}]")
        except GadgetStoreError as err:
            raise InvalidArchive(str(err)) from None
        ref = desc.annotations.get(mt.ANNOTATION_REF_NAME)
        rest = {k: v for k, v in desc.annotations.items() if k != mt.ANNOTATION_REF_NAME}
        if ref:
            tags[_import_ref_name(ref)] = desc.with_annotations(rest)
        elif is_document(desc) and _is_available(store, staged, desc.digest):
            # Untagged entries matter only when they are referrers (signatures) of something.
            doc = parse_document(_staged_bytes(store, staged, desc), f"manifest {desc.digest}")
            if doc.get("subject") is not None:
                pins.append(desc)
    if not tags and not pins:
        raise InvalidArchive("archive index.json tags no image")
    return tags, pins


def import_archive(store: Store, source: Path) -> list[str]:
    """Import every tagged image (and attached signatures); returns the tags, as ``ig`` lists them."""
    try:
        raw = open(source, "rb")  # noqa: SIM115 - closed in finally; the tar stream borrows it
    except FileNotFoundError:
        raise ImageNotFound(f"archive {source} does not exist") from None
    try:
        with store.lease():
            staged = _stage_members(store, raw)
            try:
                tags, pins = _plan_import(store, staged)
                reached = _check_graph(store, staged, [*tags.values(), *pins])
                for digest, writer in staged.sealed.items():
                    if digest in reached:
                        writer.publish(sync_dir=False)  # the transaction syncs blobs/ once, before the tags
                with store.transaction() as txn:
                    for ref, desc in sorted(tags.items()):
                        txn.tag(ref, desc)
                    for pin in pins:
                        txn.pin(pin)
            finally:
                staged.abort()
    finally:
        raw.close()
    return sorted(ref for ref in tags if not ref.endswith(".sig"))
