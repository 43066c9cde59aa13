"""Completeness gate: a file is taken only after it has been quiet long enough.

Events and scans are only hints. Every candidate is re-``stat``-ed on a short
timer; any change of size, mtime, ctime or inode, and any new event for it,
restarts its quiet period. A file is released to the upload queue once it
has been unchanged for ``settle_seconds``, however it was found. Timing uses
an injectable monotonic clock so the gate can be stepped in tests.

Its metadata file must be quiet too (and, with ``metadata: required``, is
waited for), and a version left in place that already finished is not taken
again (``alongside``).

A quiet file the service user cannot read stays here: it is an environment
problem (permissions), not bad media. Its row is marked ``unreadable``, one
WARNING says the fix, and it is released by itself once it can be opened.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watcherd.config import Config
from watcherd.intake.alongside import LeftInPlace, MetadataWatch, Signature, signature_of
from watcherd.intake.filters import ignore_reason, kind_reason
from watcherd.intake.metadata import metadata_file_for
from watcherd.intake.presence import folder_reachable
from watcherd.names import display
from watcherd.state.states import UNREADABLE, State
from watcherd.state.store import StaleState, Store
from watcherd.threads import ServiceThread

logger = logging.getLogger(__name__)

IGNORED_LOG_LIMIT = 10_000
# How old the view of paths owned by the pipeline may be when a scan hint is
# checked against it. A row that finished with its file left in place is
# offered again at most this much later than by a query per hint.
PIPELINE_VIEW_SECONDS = 1.0
# Hints offered in one write transaction: short enough that the write lock is
# held for milliseconds, long enough that commits do not dominate discovery.
HINTS_PER_COMMIT = 200
# While hints wait: a tick that took t seconds is next run after 4 t at the
# earliest, and one tick releases for at most this long (a commit each before).
TICK_SHARE_FACTOR = 4.0
RELEASE_BUDGET_SECONDS = 0.1


class ScanBatch:
    """The hints of one folder scan: finished once walked and every hint was offered.

    The scanner skips a periodic rescan of a folder while its previous batch is
    unfinished, so rescans that outpace the settler cannot pile up in the queue.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = 0
        self._walked = False

    def add(self) -> None:
        with self._lock:
            self._pending += 1

    def offered(self) -> None:
        with self._lock:
            self._pending -= 1

    def walked(self) -> None:
        with self._lock:
            self._walked = True

    @property
    def finished(self) -> bool:
        with self._lock:
            return self._walked and self._pending <= 0


@dataclass(frozen=True)
class Hint:
    """Something suggests ``path`` may be new or changed."""

    path: str
    source: str  # "event", "scan" or "recovery"
    batch: ScanBatch | None = field(default=None, compare=False, repr=False)


@dataclass
class Candidate:
    file_id: int
    signature: Signature
    quiet_since: float
    metadata: MetadataWatch | None = None


class Settler(ServiceThread):
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        intake: queue.SimpleQueue[Hint],
        release: Callable[[int], None],
        clock: Callable[[], float] = time.monotonic,
        tick_seconds: float = 0.25,
    ) -> None:
        super().__init__("settler")
        self.config = config
        self.store = store
        self.intake = intake
        self.release = release
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.candidates: dict[str, Candidate] = {}
        self._ignored_logged: set[str] = set()
        self._unreachable_logged: set[str] = set()
        self._unreadable_logged: set[str] = set()
        # Paths whose live row is past settling: a scan hint for one of them is a
        # no-op, so it is answered from here instead of with a query per file.
        self._in_pipeline: set[str] = set()
        self._in_pipeline_at: float | None = None
        self._next_tick_at = 0.0  # perf_counter time; see _paced_tick
        self._left = LeftInPlace(store)

    def step(self) -> None:
        deadline = self.clock() + self.tick_seconds
        while (remaining := deadline - self.clock()) > 0:
            hints = self._take(remaining)
            if not hints:
                break
            with self.store.batch():  # one commit for the new rows of a whole burst
                self._offer_all(hints)
        self._paced_tick()

    def _offer_all(self, hints: list[Hint]) -> None:
        for n, hint in enumerate(hints):
            try:
                self.offer(hint)
            except BaseException:
                # The restarted settler takes the rest: none is lost, and each
                # scan batch still sees all of its hints offered.
                for rest in hints[n + 1:]:
                    self.intake.put(rest)
                raise
            finally:
                if hint.batch is not None:
                    hint.batch.offered()

    def _paced_tick(self) -> None:
        """Tick, but while hints wait, give a tick of many candidates at most about a
        quarter of the thread: re-stat later only restarts a quiet period later."""
        started = time.perf_counter()
        if started < self._next_tick_at and not self.intake.empty():
            return
        self.tick()
        self._next_tick_at = started + TICK_SHARE_FACTOR * (time.perf_counter() - started)

    def _take(self, timeout: float) -> list[Hint]:
        """The next hint (waiting up to ``timeout``) and those already queued behind it."""
        try:
            hints = [self.intake.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(hints) < HINTS_PER_COMMIT:
            try:
                hints.append(self.intake.get_nowait())
            except queue.Empty:
                break
        return hints

    def offer(self, hint: Hint) -> None:
        """Start (or restart) the quiet period of ``hint.path`` if it is a candidate."""
        known = self.candidates.get(hint.path)
        if known is not None:
            if hint.source == "event":
                known.quiet_since = self.clock()
            return
        if hint.source == "scan" and hint.path in self._pipeline_view():
            return  # already further along; the pipeline owns it
        folder = self.config.folder_for(hint.path)
        if folder is None:
            self._note_ignored(hint.path, "not in any configured folder")
            return
        reason = ignore_reason(hint.path, folder)
        if reason is not None:
            self._note_ignored(hint.path, reason)
            return
        st = _lstat(hint.path)
        kind = None if st is None else kind_reason(st)
        if kind is not None:
            self._note_ignored(hint.path, kind)
            st = None
        if st is not None and self._left.seen(hint.path, st):
            return  # a finished version left in place: each rescan finds it, none queries
        record = self.store.active_by_path(hint.path)
        if st is None:
            if record is not None and record.state == State.SETTLING:
                self._gone_or_unreachable(hint.path, record.id, folder.path)
            return
        if record is None and self._left.taken(hint.path, st, folder):
            self._note_ignored(hint.path, "already ingested and left in place (after: leave)")
            return
        if record is None:
            file_id = self.store.insert(path=hint.path, folder=str(folder.path),
                                        index_id=folder.index_id, size=st.st_size,
                                        mtime_ns=st.st_mtime_ns, detail=f"found by {hint.source}")
        elif record.state != State.SETTLING:
            self._in_pipeline.add(hint.path)
            return  # already further along; the pipeline owns it
        else:
            file_id = record.id
        self.candidates[hint.path] = Candidate(file_id, signature_of(st), self.clock(),
                                               MetadataWatch.start(hint.path, folder))

    def _pipeline_view(self) -> set[str]:
        now = self.clock()
        if self._in_pipeline_at is None or now - self._in_pipeline_at >= PIPELINE_VIEW_SECONDS:
            self._in_pipeline = self.store.paths_in_pipeline()
            self._in_pipeline_at = now
        return self._in_pipeline

    def _note_ignored(self, path: str, reason: str) -> None:
        # Once per path and run: a .part file being written fires many events.
        if path not in self._ignored_logged and len(self._ignored_logged) < IGNORED_LOG_LIMIT:
            self._ignored_logged.add(path)
            logger.debug("ignoring %s: %s", display(path), reason)

    def tick(self) -> None:
        """Re-stat every candidate; release the ones quiet for long enough."""
        now = self.clock()
        due: list[tuple[str, Candidate, os.stat_result]] = []
        for path, cand in list(self.candidates.items()):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                self._gone_or_unreachable(path, cand.file_id, Path(self.store.get(
                    cand.file_id).folder))
                continue
            except OSError as exc:  # e.g. a share hiccup: keep waiting, never drop
                logger.warning("%s: cannot stat (%s); still settling", path, exc.strerror)
                cand.quiet_since = now
                continue
            sig = signature_of(st)
            if sig != cand.signature:
                cand.signature, cand.quiet_since = sig, now
            elif (now - cand.quiet_since >= self.config.settle_seconds
                  and self._metadata_settled(path, cand, now)):
                due.append((path, cand, st))
        self._release_due(due)

    def _metadata_settled(self, path: str, cand: Candidate, now: float) -> bool:
        """The metadata file is quiet too, or (``required``) the wait for it is over."""
        folder = self.config.folder_for(path)
        if folder is None:
            return True
        if cand.metadata is None:  # e.g. tracked again after its folder came back
            cand.metadata = MetadataWatch.start(path, folder)
        verdict, note = cand.metadata.verdict(path, folder, now)
        if verdict == "changed":  # written or changed since: quiet again
            cand.quiet_since = now
        if note:
            logger.info("%s: %s", display(path), note)
            self.store.note(cand.file_id, note)
        return verdict == "settled"

    def _release_due(self, due: list[tuple[str, Candidate, os.stat_result]]) -> None:
        """Release in one transaction; while hints wait, only for RELEASE_BUDGET_SECONDS
        (the rest stays quiet and goes next tick), so discovery is never held up long."""
        if not due:
            return  # no write transaction for nothing, four times a second
        released: list[int] = []
        until = time.perf_counter() + RELEASE_BUDGET_SECONDS
        try:
            with self.store.batch():
                for n, (path, cand, st) in enumerate(due):
                    if n and time.perf_counter() > until and not self.intake.empty():
                        break  # at least one per tick, so a busy queue cannot starve release
                    if self._release(path, cand, st):
                        released.append(cand.file_id)
        finally:
            # Only once committed: a worker must find the row queued.
            for file_id in released:
                self.release(file_id)

    def _gone_or_unreachable(self, path: str, file_id: int, folder: Path) -> None:
        """A missing file is vanished only if its folder is in reach; else keep it tracked
        (re-checked every tick, its quiet period restarting once it is visible again)."""
        if folder_reachable(folder):
            self.candidates.pop(path, None)
            self._unreachable_logged.discard(path)
            try:
                self.store.transition(file_id, State.VANISHED, "file disappeared while settling",
                                      expect=(State.SETTLING,), finished_at=self.store.clock())
            except StaleState:
                pass
            return
        if path not in self._unreachable_logged:
            self._unreachable_logged.add(path)
            logger.warning("%s: cannot see it because folder %s is missing or empty "
                           "(unmounted?); keeping it tracked until the folder is back",
                           path, folder)
        self.candidates[path] = Candidate(file_id, (-1, -1, -1, -1), self.clock())

    def _release(self, path: str, cand: Candidate, st: os.stat_result) -> bool:
        """Mark it queued; True if the caller is to hand it to the workers."""
        problem = unreadable_reason(path) or self._unreadable_metadata(path)
        if problem is not None:
            self._hold_unreadable(path, cand, problem)
            return False
        del self.candidates[path]
        self._unreachable_logged.discard(path)
        if path in self._unreadable_logged:
            self._unreadable_logged.discard(path)
            logger.info("%s: readable now; taking it", display(path))
        try:
            # sha256 is cleared so the worker validates and hashes this version.
            self.store.transition(
                cand.file_id, State.QUEUED,
                f"unchanged for {self.config.settle_seconds:g}s ({st.st_size} bytes)",
                expect=(State.SETTLING,), size=st.st_size, mtime_ns=st.st_mtime_ns,
                settled_at=self.store.clock(), sha256=None, duplicate_of=None,
                error_code=None, reason=None, metadata_json=None,
            )
        except StaleState:
            return False
        self._in_pipeline.add(path)
        return True

    def _unreadable_metadata(self, path: str) -> str | None:
        folder = self.config.folder_for(path)
        problem = None if folder is None else unreadable_reason(metadata_file_for(path, folder))
        return None if problem is None else f"its metadata file: {problem}"

    def _hold_unreadable(self, path: str, cand: Candidate, problem: str) -> None:
        """Keep it settling; try again after another quiet period (a chmod restarts it too)."""
        cand.quiet_since = self.clock()
        if path in self._unreadable_logged:
            return
        self._unreadable_logged.add(path)
        record = self.store.get(cand.file_id)
        if record.error_code != UNREADABLE:
            self.store.transition(cand.file_id, State.SETTLING, problem,
                                  error_code=UNREADABLE, reason=problem)
        logger.warning("%s: %s; it stays in the inbox and is taken once readable. Fix: let "
                       "the service user read it (%s)", display(path), problem, READ_FIX)


def seconds_unchanged(path: str, now: float) -> float | None:
    """How long ``path`` has not changed, judged from outside (None if it is not there).

    The settler watches the signature change over time; a one-off look can
    only go by mtime and ctime (ctime catches a rename into the folder).
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return max(0.0, now - max(st.st_mtime, st.st_ctime))


READ_FIX = "e.g. chmod o+r FILE, or give the group of the service user read access"


def unreadable_reason(path: str) -> str | None:
    """Why the service user cannot open ``path`` for reading, or None (it can, or it is gone)."""
    try:
        with open(path, "rb"):
            return None
    except PermissionError as exc:
        return f"cannot read it as user {_user()}: {exc.strerror}"
    except OSError:
        return None


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None

