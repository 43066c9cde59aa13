"""The main thread's health round: dead threads replaced (unless systemd's watchdog
restarts the whole service instead, the better-tested path back to health), dead
observers restarted, and files no queue or thread holds put back (``putback.Sweep``,
which asks ``held_files``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from watcherd.intake.watcher import Scanner

if TYPE_CHECKING:
    from watcherd.service.daemon import Daemon

logger = logging.getLogger(__name__)


def supervise(d: Daemon) -> None:
    """Replace dead threads (unless systemd's watchdog will), restart dead observers,
    put back files that no thread holds."""
    for name, thread in list(d.threads.items()):
        if not thread.is_alive() and not d.notifier.watchdog_enabled:
            logger.error("thread %s died; starting a new one", name)
            d.threads[name] = d.factories[name]()
            d.threads[name].start()
            if name == "settler":
                d.recover()
                d.scanner.request()
    if not d.scanner.is_alive() and not d.notifier.watchdog_enabled:
        logger.error("thread scanner died; starting a new one")
        d.scanner = Scanner(d.config, d.intake)
        d.watcher.scanner = d.scanner
        d.scanner.start()
    d.watcher.ensure_running()
    d.sweep.run()


def held_files(d: Daemon) -> set[int]:
    """Every file id a queue or a live thread holds, or that waits for its index."""
    held = d.index_pauses.parked() | d.paths.parked()
    for waiting in (d.work, d.to_finalize):
        with waiting.mutex:
            held.update(waiting.queue)
    for thread in d.threads.values():
        held |= thread.held_files()
    return held
