"""The thin pyfuse3 layer: inode numbers in, :class:`EntryAttributes` and bytes out.

Every handler runs inside :func:`fuse_errors`, because pyfuse3 only catches ``FUSEError`` and
anything else would take the whole mount down. Disk work goes to worker threads; the model and
the inode table are only touched on the trio thread, between awaits.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pyfuse3
import trio

from gadgetstore.engine.errors import GadgetStoreError

from .blobfds import BlobFd, BlobFdCache, read_cached
from .facts import Fact
from .inodes import InodeTable
from .live import retimed_dirs, stale_entries
from .loader import StoreReader
from .model import CATALOG_KINDS, FsModel, Missing, NotFound
from .nodes import VOLATILE_KINDS, Kind, Node
from .pulls import OnAccess, Outcome, candidate

log = logging.getLogger(__name__)
T = TypeVar("T")

LONG_TIMEOUT = 86400.0
"""Kernel cache time for names and attributes that only change with an invalidation notice."""
VOLATILE_TIMEOUT = 1.0
"""Cache time for names under by-digest/ and blobs/, which gc may delete without a journal change,
and for the directories pull on access keeps on the way to an image."""
MISS_REFRESH_AGE = 0.05
"""A lookup that misses in a journal-driven directory re-reads the journal if it is older than this."""
MAX_ROUNDS = 8
_DOTS = (".", "..")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC | os.O_CREAT


@contextlib.contextmanager
def fuse_errors(operation: str) -> Iterator[None]:
    """Funnel every failure into a FUSEError; unexpected ones are logged with their traceback."""
    try:
        yield
    except pyfuse3.FUSEError:
        raise
    except NotFound:
        raise pyfuse3.FUSEError(errno.ENOENT) from None
    except GadgetStoreError as err:
        log.warning("%s: %s", operation, err)
        raise pyfuse3.FUSEError(errno.EIO) from None
    except OSError as err:
        raise pyfuse3.FUSEError(err.errno or errno.EIO) from None
    except Exception:
        log.exception("internal error in %s", operation)
        raise pyfuse3.FUSEError(errno.EIO) from None


@dataclass
class _OpenFile:
    data: bytes | None = None
    blob: BlobFd | None = None
    size: int = 0


def _invalidate_entries(entries: Sequence[tuple[int, bytes]]) -> None:
    """Runs in a thread: pyfuse3.invalidate_entry blocks while related requests are pending."""
    for parent, name in entries:
        try:
            pyfuse3.invalidate_entry(pyfuse3.InodeT(parent), pyfuse3.FileNameT(name))
        except OSError as err:
            if err.errno != errno.ENOENT:
                log.debug("invalidate %d/%r: %s", parent, name, err)


def _invalidate_attributes(inodes: Sequence[int]) -> None:
    """Runs in a thread, like :func:`_invalidate_entries`: the kernel asks for these attributes again."""
    for ino in inodes:
        try:
            pyfuse3.invalidate_inode(pyfuse3.InodeT(ino), attr_only=True)
        except OSError as err:
            if err.errno != errno.ENOENT:
                log.debug("invalidate inode %d: %s", ino, err)


class GadgetFs(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(
        self,
        reader: StoreReader,
        model: FsModel,
        *,
        invalidate: Callable[[Sequence[tuple[int, bytes]]], None] = _invalidate_entries,
        invalidate_attributes: Callable[[Sequence[int]], None] = _invalidate_attributes,
        on_access: OnAccess | None = None,
    ) -> None:
        super().__init__()
        self.reader = reader
        self.model = model
        self.on_access = on_access
        self.table = InodeTable(model.root)
        self._invalidate = invalidate
        self._invalidate_attributes = invalidate_attributes
        self._dirs: dict[int, tuple[int, list[tuple[str, Node]]]] = {}
        self._files: dict[int, _OpenFile] = {}
        self._blob_fds = BlobFdCache()
        self._attr_cache: dict[tuple[int, float], pyfuse3.EntryAttributes] = {}
        self._handles = itertools.count(1)
        self._limiter = trio.CapacityLimiter(8)
        self._inflight: dict[Fact, trio.Event] = {}
        self._refresh_lock = trio.Lock()
        self._last_refresh = -math.inf
        self._pending: list[tuple[int, bytes]] = []
        self._pending_attributes: list[int] = []
        self._pending_event = trio.Event()
        self._uid, self._gid = os.getuid(), os.getgid()
        self._time_ns = time.time_ns()

    # -- facts and freshness -----------------------------------------------------------------------

    async def _answer(self, question: Callable[[], T]) -> T:
        """Ask the model, loading whatever it says is missing, until it can answer."""
        for _ in range(MAX_ROUNDS):
            try:
                return question()
            except Missing as missing:
                await self._load(missing.facts)
        raise pyfuse3.FUSEError(errno.EIO)

    async def _load(self, facts: list[Fact]) -> None:
        todo: list[Fact] = []
        waits: list[trio.Event] = []
        for fact in dict.fromkeys(facts):
            event = self._inflight.get(fact)
            if event is not None:
                waits.append(event)
            else:
                self._inflight[fact] = trio.Event()
                todo.append(fact)
        try:
            if todo:
                values = await trio.to_thread.run_sync(self.reader.load_many, todo, limiter=self._limiter)
                for fact, value in zip(todo, values, strict=True):
                    self.model.add_fact(fact, value)
        finally:
            for fact in todo:
                self._inflight.pop(fact).set()
        for event in waits:
            await event.wait()

    async def refresh(self) -> None:
        """Pick up journal changes; queue invalidations of kernel names that changed meaning."""
        async with self._refresh_lock:
            self._last_refresh = trio.current_time()
            catalog = await trio.to_thread.run_sync(self.reader.snapshot, limiter=self._limiter)
            if catalog is None:
                return
            self.model.set_catalog(catalog)
            for parent, name, child in stale_entries(self.table, self.model):
                self.table.untrack(parent, name, child)
                self._pending.append((parent, os.fsencode(name)))
            for ino, node in retimed_dirs(self.table, self.model):
                self.table.replace(ino, node)
                self._forget_attrs(ino)
                self._pending_attributes.append(ino)
            if self._pending or self._pending_attributes:
                self._pending_event.set()

    async def poll_journal(self, interval: float = 0.2) -> None:
        """Background task: notice other processes' pulls, imports and removals within ``interval``."""
        reported = ""
        while True:
            await trio.sleep(interval)
            try:
                await self.refresh()
                self._blob_fds.drop_unlinked()
                reported = ""
            except Exception as err:  # the mount outlives a damaged or vanished journal
                if str(err) != reported:  # once per distinct problem, not five times a second
                    reported = str(err)
                    expected = isinstance(err, GadgetStoreError | OSError)
                    log.warning("cannot re-read the journal: %s", err, exc_info=not expected)

    async def send_invalidations(self) -> None:
        """Background task: tell the kernel which names to forget, from a thread, outside any request."""
        while True:
            await self._pending_event.wait()
            await self.flush_invalidations()

    async def flush_invalidations(self) -> None:
        batch, self._pending = self._pending, []
        attributes, self._pending_attributes = self._pending_attributes, []
        self._pending_event = trio.Event()
        if batch:
            await trio.to_thread.run_sync(self._invalidate, batch)
        if attributes:
            await trio.to_thread.run_sync(self._invalidate_attributes, attributes)

    # -- attributes --------------------------------------------------------------------------------

    def _node(self, inode: int) -> Node:
        try:
            return self.table.node(inode)
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _forget_attrs(self, ino: int) -> None:
        self._attr_cache.pop((ino, LONG_TIMEOUT), None)
        self._attr_cache.pop((ino, VOLATILE_TIMEOUT), None)

    def _attrs(self, node: Node, ino: int, entry_timeout: float = LONG_TIMEOUT) -> pyfuse3.EntryAttributes:
        """Attributes never change for an inode, so they are built once (readdir sends them a lot)."""
        cached = self._attr_cache.get((ino, entry_timeout))
        if cached is None:
            cached = self._attr_cache[(ino, entry_timeout)] = self._new_attrs(node, ino, entry_timeout)
        return cached

    def _new_attrs(self, node: Node, ino: int, entry_timeout: float) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = pyfuse3.InodeT(ino)
        attrs.generation = 0
        attrs.entry_timeout = entry_timeout
        attrs.attr_timeout = VOLATILE_TIMEOUT if node.kind is Kind.PENDING else LONG_TIMEOUT
        if node.is_dir:
            attrs.st_mode = pyfuse3.ModeT(stat.S_IFDIR | 0o555)
            attrs.st_nlink = 2
        else:
            attrs.st_mode = pyfuse3.ModeT(stat.S_IFREG | 0o444)
            attrs.st_nlink = 1
        attrs.st_size = node.size
        attrs.st_blksize = 131072
        attrs.st_blocks = (node.size + 511) // 512
        attrs.st_uid, attrs.st_gid = self._uid, self._gid
        when = self._time_ns if node.mtime_ns is None else node.mtime_ns
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = when
        return attrs

    @staticmethod
    def _entry_timeout(parent: Node, node: Node | None = None) -> float:
        volatile = parent.kind in VOLATILE_KINDS or (node is not None and node.kind is Kind.PENDING)
        return VOLATILE_TIMEOUT if volatile else LONG_TIMEOUT

    # -- names -------------------------------------------------------------------------------------

    async def _child(self, parent: Node, name: str) -> Node:
        if name == ".":
            return parent
        if name == "..":
            return await self._answer(lambda: self.model.resolve(parent.path[:-1]))
        try:
            return await self._answer(lambda: self.model.child(parent, name))
        except NotFound:
            if parent.kind not in CATALOG_KINDS:
                raise
        if trio.current_time() - self._last_refresh >= MISS_REFRESH_AGE:
            await self.refresh()
            with contextlib.suppress(NotFound):
                return await self._answer(lambda: self.model.child(parent, name))
        if self.on_access is None:
            raise NotFound(name)
        return await self._pull_on_access(parent, name)

    async def _pull_on_access(self, parent: Node, name: str) -> Node:
        """A name the store lacks: pull the image it names, or keep it as a directory on the way."""
        assert self.on_access is not None
        path = (*parent.path, name)
        found = candidate(path)
        if found is None:
            raise NotFound(name)
        outcome = await self.on_access.resolve(found)
        if outcome is Outcome.PREFIX:
            return self.model.pending(path)
        if outcome is Outcome.ABSENT:
            raise NotFound(name)
        await self.refresh()
        return await self._answer(lambda: self.model.child(parent, name))

    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with fuse_errors("lookup"):
            parent = self._node(parent_inode)
            if not parent.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            text = os.fsdecode(name)
            node = await self._child(parent, text)
            ino = self.table.assign(node)
            self.table.remember(ino, parent_inode, text)
            return self._attrs(node, ino, self._entry_timeout(parent, node))

    async def getattr(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        with fuse_errors("getattr"):
            return self._attrs(self._node(inode), inode)

    async def forget(self, inode_list: Sequence[tuple[pyfuse3.InodeT, int]]) -> None:
        for inode, count in inode_list:
            self.table.forget(inode, count)
            if inode not in self.table:
                self._forget_attrs(inode)

    async def opendir(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.FileHandleT:
        """Snapshot the listing, so offsets stay valid however the store changes meanwhile."""
        with fuse_errors("opendir"):
            node = self._node(inode)
            if not node.is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            entries = await self._answer(lambda: self.model.children(node))
            parent = self.table.parent(inode)
            dots = [(".", node), ("..", self.table.node(parent))]
            fh = next(self._handles)
            self._dirs[fh] = (inode, [*dots, *entries])
            return pyfuse3.FileHandleT(fh)

    async def readdir(self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        with fuse_errors("readdir"):
            try:
                inode, entries = self._dirs[fh]
            except KeyError:
                raise pyfuse3.FUSEError(errno.EBADF) from None
            timeout = self._entry_timeout(self._node(inode))
            for index in range(start_id, len(entries)):
                name, node = entries[index]
                ino = self.table.assign(node)
                if not pyfuse3.readdir_reply(token, os.fsencode(name), self._attrs(node, ino, timeout), index + 1):
                    if self.table.nlookup(ino) == 0:
                        self.table.discard_unused(ino)
                        self._attr_cache.pop((ino, timeout), None)
                    return
                if index >= len(_DOTS):  # the kernel takes no lookup for . and .. (READDIRPLUS)
                    self.table.remember(ino, inode, name)

    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        self._dirs.pop(fh, None)

    # -- contents ----------------------------------------------------------------------------------

    async def open(self, inode: pyfuse3.InodeT, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        with fuse_errors("open"):
            node = self._node(inode)
            if node.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if flags & _WRITE_FLAGS:
                raise pyfuse3.FUSEError(errno.EROFS)
            if node.data is not None:
                handle = _OpenFile(data=node.data)
            else:
                handle = _OpenFile(blob=await self._open_blob(node), size=node.size)
            fh = next(self._handles)
            self._files[fh] = handle
            return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), keep_cache=True)

    async def _open_blob(self, node: Node) -> BlobFd:
        assert node.blob is not None
        cached = self._blob_fds.acquire(node.blob)
        if cached is not None:
            return cached
        try:
            fd, ident = await trio.to_thread.run_sync(
                self.reader.open_blob, node.blob, node.size, limiter=self._limiter
            )
        except (GadgetStoreError, FileNotFoundError) as err:
            # The view promised this file; a missing or damaged blob is an I/O error, not ENOENT.
            self.reader.report_once(node.blob, err)
            raise pyfuse3.FUSEError(errno.EIO) from None
        return self._blob_fds.add(node.blob, fd, ident)

    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        with fuse_errors("read"):
            handle = self._files.get(fh)
            if handle is None:
                raise pyfuse3.FUSEError(errno.EBADF)
            if handle.data is not None:
                return handle.data[off : off + size]
            assert handle.blob is not None
            data = read_cached(handle.blob.fd, size, off, handle.size)
            if data is None:
                data = await trio.to_thread.run_sync(os.pread, handle.blob.fd, size, off, limiter=self._limiter)
            return data

    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        handle = self._files.pop(fh, None)
        if handle is not None and handle.blob is not None:
            self._blob_fds.release(handle.blob)

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_namemax = 255
        return data

    def close_all(self) -> None:
        """After the session ended: close the blob fds, including those the kernel never released."""
        self._files.clear()
        self._blob_fds.close_all()

    # -- everything that would write ---------------------------------------------------------------

    async def _read_only(self, *_args: Any, **_kwargs: Any) -> Any:
        raise pyfuse3.FUSEError(errno.EROFS)

    setattr = mknod = mkdir = unlink = rmdir = symlink = rename = link = _read_only
    write = create = setxattr = removexattr = _read_only
