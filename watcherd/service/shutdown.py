"""Stopping the daemon's threads in order: intake first (no new work), then every
thread asked to stop; upload workers get a grace period to finish the file they are
sending, after which their upload is aborted (it is redone cleanly next start)."""

from __future__ import annotations

import logging
import time

from watcherd.ingest.upload import UploadWorker
from watcherd.intake.watcher import Scanner, Watcher
from watcherd.threads import ServiceThread

logger = logging.getLogger(__name__)


def stop_threads(watcher: Watcher, scanner: Scanner, threads: list[ServiceThread],
                 grace: float) -> None:
    watcher.stop()
    scanner.stop()
    workers = [t for t in threads if isinstance(t, UploadWorker)]
    for thread in threads:
        thread.stop()
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    for worker in workers:
        if worker.is_alive():
            logger.warning("%s: upload still running after %.0fs; aborting it (it is "
                           "redone next start)", worker.name, grace)
            worker.abort_event.set()
    for thread in [scanner, *threads]:
        thread.join(5.0)
