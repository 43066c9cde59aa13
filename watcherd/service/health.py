"""Health and a one-line summary, for systemd's watchdog and STATUS=.

The main thread pings the watchdog only while every service thread is alive
and has shown progress within ``stall_seconds`` and every observer whose
folder exists is running. A hung upload or a dead thread therefore stops the
pings, and systemd restarts the service (state is in SQLite, so a restart
loses nothing). An unreachable folder is not a fault of ours: a restart
would not bring a share back, so it does not stop the pings.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable

from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses
from watcherd.ingest.method import UploadPaths
from watcherd.ingest.progress import Progress, TerminalProgress, chunk_count
from watcherd.intake.watcher import Watcher
from watcherd.service.notify import Notifier
from watcherd.state.states import State
from watcherd.state.store import Store
from watcherd.threads import ServiceThread

logger = logging.getLogger(__name__)

STATUS_EVERY_SECONDS = 1.0
PUBLISH_EVERY_SECONDS = 2.0  # the runtime row for ``watcherd status``
WAITING_STATES = (State.SETTLING, State.QUEUED, State.VALIDATING)
# The main loop checks health every turn (a second at most); a verdict older than
# this means the loop itself is stuck, and then it pings nobody either.
VERDICT_STALE_SECONDS = 15.0


def thread_problems(threads: Iterable[ServiceThread], stall_seconds: float) -> list[str]:
    """What is wrong with ``threads``: dead ones, and stuck ones with where they are."""
    problems = []
    for thread in threads:
        if not thread.is_alive():
            problems.append(f"thread {thread.name} is dead")
        elif (idle := thread.seconds_since_heartbeat()) > stall_seconds:
            problems.append(f"thread {thread.name} has made no progress for {idle:.0f}s "
                            f"(limit {stall_seconds:g}s), at {where(thread)}")
    return problems


def where(thread: ServiceThread, depth: int = 4) -> str:
    """The innermost frames ``thread`` is executing, outermost first, for the log.

    The full stack of every thread goes to the journal when systemd's watchdog
    aborts us (faulthandler); this line says where to look before that.
    """
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return "an unknown place"
    frames = traceback.extract_stack(frame)[-depth:]
    return " > ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}()" for f in frames)


def status_line(counts: dict[str, int], folders: tuple[int, int],
                uploads: list[tuple[str, int]], held_back: str | None,
                elsewhere: int = 0) -> str:
    """E.g. ``watching 2 folders; uploading clip.mp4 43%; 3 indexing; 12 done, 1 failed``."""
    watched, configured = folders
    parts = [f"watching {configured} folder{'s' * (configured != 1)}" if watched == configured
             else f"watching {watched} of {configured} folders"]
    if uploads:
        parts.append("uploading " + ", ".join(f"{name} {pct}%" for name, pct in uploads))
    if held_back:
        parts.append(f"uploads {held_back}")
    # Several hosts: files another host claimed sit in our settler; not waiting for us.
    waiting = sum(counts.get(state, 0) for state in WAITING_STATES) - elsewhere
    if waiting > 0:
        parts.append(f"{waiting} waiting")
    if elsewhere:
        parts.append(f"{elsewhere} with other hosts")
    if counts.get(State.INDEXING):
        parts.append(f"{counts[State.INDEXING]} indexing")
    parts.append(f"{counts.get(State.DONE, 0)} done, {counts.get(State.FAILED, 0)} failed")
    return "; ".join(parts)


class Monitor:
    """Called by the main thread every turn: keeps STATUS= current, pings when healthy."""

    def __init__(self, *, notifier: Notifier, store: Store, progress: Progress,
                 gate: UploadGate, watcher: Watcher,
                 threads: Callable[[], list[ServiceThread]], stall_seconds: float,
                 index_pauses: IndexPauses | None = None,
                 paths: UploadPaths | None = None,
                 publish: Callable[[list[str]], None] | None = None,
                 display: TerminalProgress | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 coordination: Callable[[], str | None] = lambda: None,
                 elsewhere: Callable[[], int] = lambda: 0) -> None:
        self.notifier = notifier
        self.store = store
        self.progress = progress
        self.gate = gate
        self.index_pauses = index_pauses
        self.paths = paths
        self.watcher = watcher
        self.threads = threads
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.publish = publish
        self.display = display
        self.coordination = coordination  # several hosts: why claiming is paused
        self.elsewhere = elsewhere  # several hosts: files held for another host
        self.next_ping = 0.0
        self.next_status = 0.0
        self.next_publish = 0.0
        self.reported: list[str] = []
        self.checked_at: float | None = None  # when ``reported`` was last worked out
        self.share_error: str | None = None

    def tick(self) -> None:
        now = self.clock()
        # Health and the ping first: they touch no database, so a slow or
        # failing status query can never starve the watchdog by itself.
        problems = self.problems()
        self._report(problems)
        self.checked_at = now
        if self.notifier.watchdog_enabled and now >= self.next_ping and not problems:
            self.next_ping = now + (self.notifier.watchdog_interval or 0.0)
            self.notifier.watchdog()
        try:
            if self._share(now, problems):
                self.share_error = None
        except Exception as exc:  # noqa: BLE001 (next turn retries; said once per kind)
            if str(exc) != self.share_error:
                logger.warning("cannot update the status line or runtime row: %s", exc)
            self.share_error = str(exc)

    def _share(self, now: float, problems: list[str]) -> bool:
        """STATUS= for systemd, the runtime row for the CLI, the bars; True if any was due."""
        due = False
        if now >= self.next_status:
            self.next_status = now + STATUS_EVERY_SECONDS
            self.notifier.status(self.summary())
            due = True
        if self.publish is not None and now >= self.next_publish:
            self.next_publish = now + PUBLISH_EVERY_SECONDS
            self.publish(problems)
            due = True
        if self.display is not None:
            self.display.show({file_id: (os.path.basename(path) + chunk_count(
                self.progress.chunks_of(file_id), " "), done, total)
                for file_id, path, done, total in self.progress.uploads()})
        return due

    def verdict(self) -> str | None:
        """Why the watchdog would not be pinged now, or None when it would (``/healthz``).

        Read from any thread: the main loop's last check, not a second one of
        its own, so the probe and the watchdog never disagree.
        """
        if self.checked_at is None:
            return "starting: no health check yet"
        age = self.clock() - self.checked_at
        if age > VERDICT_STALE_SECONDS:
            return f"the main loop has not checked health for {age:.0f}s"
        return "; ".join(self.reported) or None

    def problems(self) -> list[str]:
        return thread_problems(self.threads(), self.stall_seconds) + self.watcher.broken()

    def summary(self) -> str:
        uploads = [(os.path.basename(path), int(100 * done / total) if total else 0)
                   for _, path, done, total in self.progress.uploads()]
        folders = (sum(w.healthy for w in self.watcher.watches), len(self.watcher.watches))
        held_back = [self.gate.describe(),
                     self.index_pauses.describe() if self.index_pauses else None,
                     self.paths.describe() if self.paths else None,
                     self.coordination()]
        return status_line(self.store.counts(), folders, uploads,
                           "; uploads ".join(why for why in held_back if why) or None,
                           self.elsewhere())

    def _report(self, problems: list[str]) -> None:
        """Log each new problem once, and the recovery."""
        if problems == self.reported:
            return
        # Stuck times grow every turn; compare what is wrong, not for how long.
        if [p.split(" has made")[0] for p in problems] != \
                [p.split(" has made")[0] for p in self.reported]:
            if problems:
                consequence = ("withholding watchdog pings so systemd restarts watcherd"
                               if self.notifier.watchdog_enabled else "no watchdog to act on it")
                logger.critical("unhealthy (%s): %s", consequence, "; ".join(problems))
            else:
                logger.info("healthy again")
        self.reported = problems
