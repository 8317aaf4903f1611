"""Mount, serve until unmounted or signalled, and always leave the mount point clean."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

import pyfuse3
import trio

from gadgetstore.engine.errors import GadgetStoreError
from gadgetstore.engine.images import host_arch
from gadgetstore.engine.store import Store

from .adapter import GadgetFs
from .catalog import MountCatalog
from .loader import StoreReader
from .model import FsModel
from .pulls import Fetch, OnAccess

log = logging.getLogger(__name__)

FSNAME = "gadgetstore"
ALLOWED_OPTIONS = frozenset({"allow_other", "allow_root", "auto_unmount", "debug"})
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class MountError(GadgetStoreError):
    """The kernel refused the mount (no permission, busy mount point, no FUSE)."""


def mount_options(extra: Iterable[str]) -> set[str]:
    """pyfuse3's defaults plus ``ro``; refuses options that would contradict a read-only view."""
    options = set(pyfuse3.default_options) | {"ro", f"fsname={FSNAME}", f"subtype={FSNAME}"}
    for option in extra:
        if option not in ALLOWED_OPTIONS:
            raise ValueError(f"unsupported mount option {option!r} (allowed: {', '.join(sorted(ALLOWED_OPTIONS))})")
        options.add(option)
    return options


def build_fs(store: Store, fetch: Fetch | None = None) -> GadgetFs:
    """The file system over ``store``; with ``fetch``, images it lacks are pulled on access."""
    reader = StoreReader(store)
    catalog = reader.snapshot() or MountCatalog()
    model = FsModel(catalog, host_arch(), store_label=str(store.root), pull_on_access=fetch is not None)
    return GadgetFs(reader, model, on_access=OnAccess(fetch) if fetch is not None else None)


def serve(store: Store, mountpoint: Path, options: set[str], ready: Callable[[], None] | None = None,
          fetch: Fetch | None = None) -> None:
    """Blocks until the file system is unmounted, SIGINT or SIGTERM; unmounts on every way out."""
    fs = build_fs(store, fetch)
    # Hold SIGINT/SIGTERM from here until trio listens for them: a signal in between would kill the
    # process with the kernel mount still in place ("Transport endpoint is not connected").
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pyfuse3.init(fs, str(mountpoint), options)
    except RuntimeError as err:  # pyfuse3 reports a failed fuse_session_mount this way
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        raise MountError(f"cannot mount at {mountpoint}: {err}") from None
    try:
        if ready is not None:
            ready()
        trio.run(_main, fs)
    finally:
        pyfuse3.close(unmount=True)
        fs.close_all()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


async def _main(fs: GadgetFs) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fs.poll_journal)
        nursery.start_soon(fs.send_invalidations)
        nursery.start_soon(_stop_on_signals)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


async def _stop_on_signals() -> None:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a signal held since init arrives now
        async for signum in signals:
            log.info("received %s, unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return
