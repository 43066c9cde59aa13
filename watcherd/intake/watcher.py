"""Detection: watchdog observers per folder, plus scans as a safety net.

Events are hints, never proof (a moved-in file emits only a created event;
inotify can overflow silently; shares go away). So handlers only enqueue a
``Hint``, and the ``Scanner`` walks every folder at start and every
``rescan_interval_seconds``, feeding the same queue. The settle gate decides.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from watcherd.config import Config, FolderConfig
from watcherd.intake.filters import name_reason
from watcherd.intake.settle import Hint, ScanBatch
from watcherd.threads import ServiceThread, beat

logger = logging.getLogger(__name__)

# Only these mean "content may have appeared or changed". Opened, closed-no-write
# (our own reads) and attrib events are noise.
CANDIDATE_EVENTS = {"created", "modified", "closed", "moved"}


class HintingHandler(FileSystemEventHandler):
    """Runs on watchdog's dispatcher thread: enqueue and return, nothing else."""

    def __init__(self, intake: queue.SimpleQueue[Hint]) -> None:
        self.intake = intake

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if event.is_directory or event.event_type not in CANDIDATE_EVENTS:
                return
            path = event.dest_path if event.event_type == "moved" else event.src_path
            self.intake.put(Hint(os.fsdecode(path), "event"))
        except Exception:  # an exception here would kill every watch
            logger.exception("event handler failed for %r", event)


class FolderWatch:
    """One folder's observer, restartable when it dies or the folder returns."""

    def __init__(self, folder: FolderConfig, intake: queue.SimpleQueue[Hint],
                 poll_seconds: float) -> None:
        self.folder = folder
        self.intake = intake
        self.poll_seconds = poll_seconds
        self.observer: BaseObserver | None = None
        self.mode = "polling" if folder.polling else "inotify"
        self.last_error: str | None = None
        self.identity: tuple[int, int] | None = None  # (st_dev, st_ino) when watching began

    @property
    def healthy(self) -> bool:
        return self.problem() is None

    def problem(self) -> str | None:
        """Why this watch no longer sees the folder's events, or None.

        inotify watches the directory's inode: if the folder is removed, or a
        share is unmounted or mounted over it, the old watch goes deaf (its
        emitter ends) while the observer thread lives on.
        """
        if self.observer is None or not self.observer.is_alive():
            return "observer stopped"
        if not all(emitter.is_alive() for emitter in self.observer.emitters):
            return "watch ended (folder removed or unmounted?)"
        try:
            st = os.stat(self.folder.path)
        except OSError as exc:
            return f"folder is gone ({exc.strerror})"
        if (st.st_dev, st.st_ino) != self.identity:
            return "folder was replaced or a filesystem was (un)mounted on it"
        return None

    def start(self) -> bool:
        """Start observing; False (and the reason logged once) when not possible."""
        try:
            st = os.stat(self.folder.path)
        except OSError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            self._fail(f"folder {self.folder.path} does not exist or is not a directory")
            return False
        observer = None
        try:
            # Constructing an inotify observer opens an inotify instance and starts
            # its reader thread: it can fail (EMFILE) and must be stopped on failure.
            observer = self._new_observer()
            observer.schedule(HintingHandler(self.intake), str(self.folder.path),
                              recursive=self.folder.recursive)
            observer.start()
        except OSError as exc:
            if observer is not None:
                observer.stop()
            if exc.errno in (errno.ENOSPC, errno.EMFILE) and self.mode == "inotify":
                logger.warning(
                    "%s: inotify limit reached (%s); falling back to polling. Raise "
                    "fs.inotify.max_user_watches / max_user_instances with sysctl to "
                    "use inotify.", self.folder.path, exc.strerror)
                self.mode = "polling"
                return self.start()
            self._fail(f"cannot watch {self.folder.path}: {exc.strerror or exc}")
            return False
        self.observer = observer
        self.identity = (st.st_dev, st.st_ino)
        if self.last_error:
            logger.info("%s: watching again (%s)", self.folder.path, self.mode)
        self.last_error = None
        return True

    def _new_observer(self) -> BaseObserver:
        if self.mode == "polling":
            return PollingObserver(timeout=self.poll_seconds)
        return Observer()

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            logger.error("%s; will keep retrying", message)
        self.last_error = message

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None


class Watcher:
    """All folder watches; ``ensure_running`` is called by the main loop."""

    def __init__(self, config: Config, intake: queue.SimpleQueue[Hint],
                 scanner: Scanner) -> None:
        self.intake = intake
        self.poll_seconds = _poll_seconds(config)
        self.watches = [FolderWatch(f, intake, self.poll_seconds) for f in config.folders]
        self.scanner = scanner

    def reconfigure(self, config: Config) -> None:
        """Watch added folders, stop removed ones, restart those whose watching changed."""
        self.poll_seconds = _poll_seconds(config)
        current = {w.folder.path: w for w in self.watches}
        watches = []
        for folder in config.folders:
            watch = current.pop(folder.path, None)
            if watch is not None and (watch.folder.recursive, watch.folder.polling) == \
                    (folder.recursive, folder.polling):
                watch.folder = folder  # the rest is read per file, so no restart
            else:
                if watch is not None:
                    watch.stop()
                watch = FolderWatch(folder, self.intake, self.poll_seconds)
                if watch.start():
                    logger.info("%s: watching (%s)", folder.path, watch.mode)
                self.scanner.request(folder)
            watches.append(watch)
        for watch in current.values():
            watch.stop()
            logger.info("%s: no longer watched (removed from the config); files already "
                        "tracked there are finished", watch.folder.path)
        self.watches = watches

    def start(self) -> None:
        for watch in self.watches:
            watch.start()

    def ensure_running(self) -> None:
        """Restart any dead observer; rescan its folder since events were missed."""
        for watch in self.watches:
            problem = watch.problem()
            if problem is None:
                continue
            if watch.observer is not None:
                logger.error("%s: %s; files already tracked are kept, re-establishing the "
                             "watch", watch.folder.path, problem)
                watch.stop()
            if watch.start():
                self.scanner.request(watch.folder)

    def broken(self) -> list[str]:
        """Watches that cannot be restarted although their folder is there."""
        return [f"cannot watch {w.folder.path}: {w.last_error}" for w in self.watches
                if w.last_error and not w.healthy and w.folder.path.is_dir()]

    def stop(self) -> None:
        for watch in self.watches:
            watch.stop()


def _poll_seconds(config: Config) -> float:
    # Polling faster than half the settle time buys nothing: settling waits anyway.
    return max(1.0, min(5.0, config.settle_seconds / 2))


class Scanner(ServiceThread):
    """Walks folders on request and every ``rescan_interval_seconds``."""

    def __init__(self, config: Config, intake: queue.SimpleQueue[Hint]) -> None:
        super().__init__("scanner")
        self.config = config
        self.intake = intake
        self._requests: queue.SimpleQueue[FolderConfig] = queue.SimpleQueue()
        self._next_full_scan = time.monotonic() + config.rescan_interval_seconds
        self.last_scan: dict[str, float] = {}
        self._batches: dict[Path, ScanBatch] = {}  # each folder's latest scan

    def request(self, folder: FolderConfig | None = None) -> None:
        """Scan one folder (or all when None) soon."""
        for f in [folder] if folder else self.config.folders:
            self._requests.put(f)

    def step(self) -> None:
        try:
            folder = self._requests.get(timeout=0.5)
        except queue.Empty:
            if time.monotonic() >= self._next_full_scan:
                self._next_full_scan = time.monotonic() + self.config.rescan_interval_seconds
                self._request_periodic()
            return
        batch = ScanBatch()
        self._batches[folder.path] = batch
        found = 0
        for path in scan_folder(folder):
            batch.add()
            self.intake.put(Hint(path, "scan", batch))
            found += 1
        batch.walked()
        self.last_scan[str(folder.path)] = time.time()
        logger.debug("scanned %s: %d candidate files", folder.path, found)

    def _request_periodic(self) -> None:
        """Rescan every folder whose previous scan the settler has taken in completely."""
        for folder in self.config.folders:
            previous = self._batches.get(folder.path)
            if previous is not None and not previous.finished:
                logger.debug("%s: previous scan still being taken in; skipping this rescan",
                             folder.path)
                continue
            self._requests.put(folder)


def scan_folder(folder: FolderConfig) -> Iterator[str]:
    """Candidate files under ``folder`` (never inside done/failed or hidden dirs)."""
    pending: list[tuple[Path, tuple[str, ...]]] = [(folder.path, ())]
    while pending:
        directory, relative = pending.pop()
        beat()  # a tree of 10,000 files on a share takes a while
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            logger.warning("cannot scan %s: %s", directory, exc.strerror or exc)
            continue
        inside_special = _under_special(directory, folder)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                path = Path(entry.path)
                if folder.recursive and not entry.name.startswith(".") and \
                        path not in (folder.done_dir, folder.failed_dir):
                    pending.append((path, (*relative, entry.name)))
            # The walk never enters done/failed, hidden or (non-recursive) sub
            # folders, so of ignore_reason only the naming rules are left to ask.
            elif not inside_special and name_reason((*relative, entry.name), folder) is None:
                yield entry.path


def _under_special(directory: Path, folder: FolderConfig) -> bool:
    """Inside done/ or failed/ (only if configured around the watched folder itself)."""
    return directory.is_relative_to(folder.done_dir) or directory.is_relative_to(folder.failed_dir)
