"""Follow every uploaded file's task until Twelve Labs says ready or failed.

A task is a ``/tasks`` task, or on the multipart path the indexed asset
(``jobs``); a multipart row whose asset is not indexed yet is taken one step
further each turn by ``indexing.AssetIndexer`` on this thread, under the same
pauses, backoff and timeout.

Each task is polled every ``poll_interval_seconds`` with ±20 % jitter, so a
burst of uploads does not turn into a burst of polls. With several tasks in
one index, one ``GET /tasks?index_id=…&status=…`` (the unfinished ones)
answers for all of them, and only tasks missing from it get a GET of their
own. Any status other than ``ready``/``failed`` counts as still working
(unknown ones are logged once).
Accepts both the v1.3 (``system_metadata``) and v1.2 (``metadata``,
``process.percentage``) task shapes. Tasks of an index that is gone are not
polled (and not failed) until it answers again; an unplanned exception while
handling one task is noted in its history and that task is polled again.

``task_timeout_seconds`` counts the time a task has been followed on the
monotonic clock, saved in the row now and then so a restart continues the
count: an NTP step or a wrong wall clock neither fails nor prolongs a task
(time while the daemon is stopped is not counted).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import partial

from watcherd.backoff import retry_delay
from watcherd.config import Config
from watcherd.errors import ApiError, ApiRejected, AssetFailed, TransientError, UploadsPaused
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexing import AssetIndexer
from watcherd.ingest.indexpause import IndexPauses, index_gone
from watcherd.ingest.jobs import (
    AssetCalls,
    IndexedAssets,
    Jobs,
    Tasks,
    awaiting_indexed_asset,
    failure_reason,
    job_label,
    on_multipart,
    percent,
    still,
)
from watcherd.ingest.putback import InternalErrors, give_up
from watcherd.state.states import KNOWN_TASK_STATUSES, TERMINAL_TASK_STATUSES, State
from watcherd.state.store import FileRecord, StaleState, Store
from watcherd.threads import ServiceThread
from watcherd.twelvelabs.client import TwelveLabsClient

logger = logging.getLogger(__name__)


# From two tasks in an index on, one list request replaces a GET per task
# (bench/api_economy.py measures it); a task missing from the list is GET.
BATCH_MIN_TASKS = 2
# How often the time followed is saved: a crash forgets at most this much.
FOLLOWED_SAVE_SECONDS = 60.0


class Poller(ServiceThread):
    def __init__(
        self,
        *,
        store: Store,
        api: TwelveLabsClient,
        gate: UploadGate,
        finalize: Callable[[int], None],
        interval: float,
        task_timeout: float = Config.task_timeout_seconds,
        batch: bool = True,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        tick_seconds: float = 0.5,
        index_pauses: IndexPauses | None = None,
        internal_errors: InternalErrors | None = None,
        assets: AssetCalls | None = None,
    ) -> None:
        super().__init__("poller")
        self.store = store
        self.api = api
        self.gate = gate
        self.finalize = finalize
        self.interval = interval
        self.task_timeout = task_timeout
        self.batch = batch
        self.clock = clock
        self.rng = rng
        self.tick_seconds = min(tick_seconds, interval)
        self.next_poll: dict[int, float] = {}
        self.failures: dict[int, int] = {}
        # file id -> (monotonic reading, seconds followed at that reading)
        self._followed_from: dict[int, tuple[float, float]] = {}
        self._unknown_logged: set[str] = set()
        self.index_pauses = index_pauses
        self.internal_errors = internal_errors or InternalErrors()
        self.tasks: Jobs = Tasks(api)
        # Without the assets calls (tests of the /tasks path) multipart rows wait.
        self.indexed: Jobs | None = IndexedAssets(assets) if assets else None
        self.indexer = AssetIndexer(store=store, assets=assets, gate=gate,
                                    stop=self.stop_event) if assets else None

    def reconfigure(self, config: Config) -> None:
        self.interval = config.poll_interval_seconds
        self.task_timeout = config.task_timeout_seconds
        self.batch = config.poll_batch
        self.tick_seconds = min(self.tick_seconds, self.interval)

    def step(self) -> None:
        self.poll_due()
        self.stop_event.wait(self.tick_seconds)

    def poll_due(self) -> None:
        """Poll the indexes with a task whose turn has come."""
        if self.gate.paused is not None:
            return  # every request would be refused; the pause check resumes us
        now = self.clock()
        by_index: dict[tuple[bool, str], list[FileRecord]] = {}
        due: set[tuple[bool, str]] = set()
        for record in self.store.in_states(State.INDEXING):
            if self.index_pauses is not None and self.index_pauses.why(record.index_id):
                continue  # its index is gone for now: nothing to ask, nothing to fail
            if (on_multipart(record) and self.indexer is None) or self._timed_out(record):
                continue
            if awaiting_indexed_asset(record):
                if self.next_poll.get(record.id, 0.0) <= now and not self.stop_event.is_set():
                    self._guarded(record, partial(self.advance, record))
                continue
            key = (on_multipart(record), record.index_id)
            by_index.setdefault(key, []).append(record)
            if self.next_poll.get(record.id, 0.0) <= now:
                due.add(key)
        for key in sorted(due):
            records = by_index[key]
            if self.batch and len(records) >= BATCH_MIN_TASKS:
                records = self.poll_batch(key[1], records)
            for record in records:
                if self.stop_event.is_set():
                    return
                self._guarded(record, partial(self.poll, record))

    def _guarded(self, record: FileRecord, action: Callable[[], None]) -> None:
        """Run ``action`` for one task; an unplanned error is noted and the task polled again."""
        def again(detail: str) -> None:
            self.store.note(record.id, detail)
            self._schedule(record.id)

        self.internal_errors.run(record.id, action, put_back=again, give_up=partial(
            give_up, self.store, record.id, finalize=self.finalize))

    def poll_batch(self, index_id: str, records: list[FileRecord]) -> list[FileRecord]:
        """One list request for all of an index's unfinished tasks, instead of one GET each.

        Returns the records whose task is not in that list: most likely just
        finished, they get a GET of their own (the sidecar wants the full task).
        """
        jobs = self._jobs(records[0])
        try:
            running = jobs.running(index_id)
        except (TransientError, UploadsPaused, ApiRejected) as exc:
            logger.debug("listing %ss of index %s failed (%s); polling one by one",
                         jobs.kind, index_id, exc.describe())
            return records
        rest = []
        for record in records:
            task = running.get(record.task_id or "")
            if task is None:
                rest.append(record)
                continue
            self.failures.pop(record.id, None)
            self._schedule(record.id)
            self._guarded(record, partial(self._note_status, record, task))
        return rest

    def poll(self, record: FileRecord) -> None:
        try:
            task = self._jobs(record).get(record)
        except (TransientError, UploadsPaused, ApiRejected) as exc:
            self._failed_request(record, exc, "can no longer be read")
            return
        self.failures.pop(record.id, None)
        self._schedule(record.id)
        self._note_status(record, task)

    def advance(self, record: FileRecord) -> None:
        """A multipart row whose asset is not indexed yet: one step of the indexer."""
        assert self.indexer is not None
        self._schedule(record.id)
        try:
            self.indexer.advance(record)
        except AssetFailed as exc:
            self._finish(record, "failed", exc.asset, exc.describe(), error_code=exc.code)
            return
        except (TransientError, UploadsPaused, ApiRejected) as exc:
            self._failed_request(record, exc, "could not be indexed")
            return
        self.failures.pop(record.id, None)

    def _failed_request(self, record: FileRecord, exc: ApiError, what: str) -> None:
        """Back off, pause, wait for the index, or fail the file, by the error's type."""
        if isinstance(exc, TransientError):
            self._backoff(record, exc)
        elif isinstance(exc, UploadsPaused):
            self.gate.pause(exc)  # the pause check says so, with the fix
        elif isinstance(exc, ApiRejected) and not self._index_gone(record, exc):
            self._finish(record, "failed", None, f"{job_label(record)} {what}: "
                         f"{exc.describe()}", error_code=exc.code)

    def _jobs(self, record: FileRecord) -> Jobs:
        return self.indexed if on_multipart(record) and self.indexed else self.tasks

    def _index_gone(self, record: FileRecord, exc: ApiRejected) -> bool:
        """True if the task is unreadable because its index is gone (then it waits)."""
        if self.index_pauses is None:
            return False
        try:
            if not index_gone(self.api, record.index_id, exc):
                return False
        except TransientError as probe:
            self._backoff(record, probe)
            return True
        except UploadsPaused as probe:
            self.gate.pause(probe)
            return True
        self.index_pauses.pause(record.index_id, exc)
        return True

    def _timed_out(self, record: FileRecord) -> bool:
        """Fail a task that never ends, so the file does not sit in the inbox forever."""
        age = self._followed(record)
        if age <= self.task_timeout:
            return False
        self._finish(record, "failed", record.task(),
                     f"{still(record)} "
                     f"after {age / 3600:.1f} h (task_timeout_seconds is "
                     f"{self.task_timeout:g})", error_code="task_timeout")
        return True

    def _followed(self, record: FileRecord) -> float:
        """Seconds this task has been followed, this run and the runs before."""
        now = self.clock()
        saved = record.indexing_seconds or 0.0
        start, at_start = self._followed_from.setdefault(record.id, (now, saved))
        seconds = at_start + max(0.0, now - start)
        if seconds - saved >= FOLLOWED_SAVE_SECONDS:
            self.store.update(record.id, indexing_seconds=seconds)
        return seconds

    def _note_status(self, record: FileRecord, task: dict) -> None:
        status = str(task.get("status") or "unknown")
        if status not in KNOWN_TASK_STATUSES and status not in self._unknown_logged:
            self._unknown_logged.add(status)
            logger.warning("%s has unknown status %r; treating it as still working",
                           job_label(record), status)
        if status in TERMINAL_TASK_STATUSES:
            reason = None if status == "ready" else failure_reason(
                self._jobs(record).kind, record.task_id, task)
            self._finish(record, status, task, reason,
                         error_code=None if status == "ready" else "task_failed")
        elif status != record.remote_status:
            self.store.update(record.id, remote_status=status)
            logger.info("%s: %s is %s%s", record.path, job_label(record), status,
                        percent(task))

    def _finish(self, record: FileRecord, outcome: str, task: dict | None,
                reason: str | None, error_code: str | None = None) -> None:
        video_id = (task or {}).get("video_id") or record.video_id
        status = (task or {}).get("status", record.remote_status)
        try:
            self.store.transition(
                record.id, State.FINALIZING, f"task {outcome}" + (f": {reason}" if reason else ""),
                expect=(State.INDEXING,), outcome=outcome, reason=reason,
                error_code=error_code, task_json=task, video_id=video_id,
                remote_status=status,
            )
        except StaleState:
            return
        self.next_poll.pop(record.id, None)
        self._followed_from.pop(record.id, None)
        self.finalize(record.id)

    def _schedule(self, file_id: int) -> None:
        jitter = 0.8 + 0.4 * self.rng()
        self.next_poll[file_id] = self.clock() + self.interval * jitter

    def _backoff(self, record: FileRecord, exc: TransientError) -> None:
        failures = self.failures.get(record.id, 0) + 1
        self.failures[record.id] = failures
        delay = max(self.interval, retry_delay(exc.retry_after, failures, self.rng))
        self.next_poll[record.id] = self.clock() + delay
        logger.warning("%s: polling %s failed (%s); next try in %.0fs",
                       record.path, job_label(record), exc.describe(), delay)

