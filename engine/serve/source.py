"""Keeps the served :class:`ServedCatalog` in step with the store, which other processes keep writing."""

from __future__ import annotations

import logging
import math

import trio

from gadgetstore.engine.store import Store

from .catalog import EMPTY_CATALOG, ServedCatalog, catalog_of

log = logging.getLogger("gadgetstore.serve")


class CatalogSource:
    """Re-reads the journal at most every ``interval`` seconds; rebuilds only when it changed.

    Rebuilding runs in a worker thread under a lock; requests arriving meanwhile are answered from
    the previous catalog rather than queueing behind it.
    """

    def __init__(self, store: Store, interval: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self.catalog = EMPTY_CATALOG
        self._lock = trio.Lock()
        self._checked = -math.inf
        self._seen: int | None = None  # the store's generation the catalog was built from
        self._reported: set[str] = set()

    async def current(self) -> ServedCatalog:
        if self._lock.locked() or trio.current_time() - self._checked < self.interval:
            return self.catalog
        async with self._lock:
            self.catalog = await trio.to_thread.run_sync(self._refresh)
            self._checked = trio.current_time()
        return self.catalog

    def _refresh(self) -> ServedCatalog:
        """Blocking; rebuilds only when the store's generation moved (see Store.generation)."""
        seen = self.store.generation()
        if seen == self._seen:
            return self.catalog
        catalog = catalog_of(self.store, self.catalog)
        for problem in catalog.problems:
            if problem not in self._reported:
                self._reported.add(problem)
                log.warning("not serving part of the store: %s", problem)
        self._seen = seen
        return catalog
