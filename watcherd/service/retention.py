"""Retention: the database stays the size of ``history_retention_days``, not of all time.

The main thread calls ``tick`` every turn. While there is old history to
forget, each call prunes one small batch (one short write transaction, so
uploads and the poller never wait long for the lock); once nothing is left it
returns the freed pages to the file system a little at a time and rests for
an hour. What is kept forever is decided by ``Store.prune``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from watcherd.state.store import Store
from watcherd.units import human_bytes

logger = logging.getLogger(__name__)

BATCH_FILES = 500
BUSY_PAUSE_SECONDS = 0.5  # between batches: writers get the lock in between
REST_SECONDS = 3600.0  # after a pass that found nothing more to prune
VACUUM_PAGES = 2048  # 8 MiB of 4 KiB pages per turn
ADVISE_VACUUM_BYTES = 64 * 2**20


class Retention:
    def __init__(self, store: Store, days: Callable[[], float], *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.days = days  # read each turn: a reload may change it
        self.clock = clock
        self.monotonic = monotonic
        self.next_turn = 0.0
        self.pruned = 0
        self.vacuuming = False
        self.advised = False

    def tick(self) -> None:
        now = self.monotonic()
        days = self.days()
        if days <= 0 or now < self.next_turn:
            return
        if self.vacuuming:
            self._vacuum_some(now)
            return
        deleted = self.store.prune(self.clock() - days * 86400, BATCH_FILES)
        if deleted:
            self.pruned += deleted
            self.next_turn = now + BUSY_PAUSE_SECONDS
            return
        if self.pruned:
            logger.info("retention: forgot %d history line(s) and file row(s) older than "
                        "%g days", self.pruned, days)
            self.pruned = 0
        self.vacuuming = True
        self._vacuum_some(now)

    def _vacuum_some(self, now: float) -> None:
        freed = self.store.vacuum_some(VACUUM_PAGES)
        if freed:
            self.next_turn = now + BUSY_PAUSE_SECONDS
            return
        self.vacuuming = False
        self.next_turn = now + REST_SECONDS
        if freed is None and not self.advised:
            free = self.store.free_bytes()
            if free >= ADVISE_VACUUM_BYTES:
                self.advised = True
                logger.warning("retention: %s of the state database is free space it cannot "
                               "give back (it predates incremental vacuum); to shrink it, "
                               "stop watcherd and run: sqlite3 %s 'PRAGMA auto_vacuum="
                               "INCREMENTAL; VACUUM'", human_bytes(free), self.store.path)
