"""Files that need no upload of their own, or not yet: the task an earlier attempt
created is adopted (``dedupe.find_earlier_task`` found it), a file with the content of
another file in its index shares that file's task, and a file that can only be told
apart once a candidate task finishes indexing waits for it.

Waiting is always at the back of the upload queue, in short turns, so a waiting file
never holds up the others. A task this module records also goes to the cluster's claim
when several hosts share the folders.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from watcherd.config import Config
from watcherd.ingest.clustersteps import ClusterSteps
from watcherd.ingest.dedupe import CandidateWaits, Lookup, join_holder
from watcherd.state.states import State
from watcherd.state.store import FileRecord, Store

logger = logging.getLogger(__name__)

# A file waiting for an identical one to finish uploading is looked at again
# this often (it goes to the back of the queue, so it never blocks others).
DUPLICATE_RECHECK_SECONDS = 1.0
# Longest pause between taking a deferred file from the queue and putting it
# back, shared among all queued files so other files are never held up long.
DEFER_TURN_SECONDS = 0.5


class Adoption:
    def __init__(self, *, store: Store, config: Callable[[], Config], work: queue.Queue[int],
                 stop: threading.Event, finalize: Callable[[int], None],
                 cluster: ClusterSteps | None, clock: Callable[[], float]) -> None:
        self.store, self.config, self.work, self.stop = store, config, work, stop
        self.finalize, self.cluster = finalize, cluster
        self.waits = CandidateWaits(clock)

    def record_task(self, record: FileRecord, task_id: str, video_id: str | None,
                    how: str) -> None:
        self.store.transition(record.id, State.INDEXING, how, task_id=task_id,
                              video_id=video_id, uploaded_at=self.store.clock(),
                              task_may_exist=0)
        if self.cluster is not None:
            self.cluster.claim_task(record, task_id, video_id)

    def adopted_or_waiting(self, record: FileRecord, lookup: Lookup) -> bool:
        """Adopt the confirmed task, or come back when a candidate can be checked."""
        if lookup.task is None:
            return self._wait_for_candidates(record, lookup)
        self.waits.forget(record.id)
        self.record_task(record, lookup.task["_id"], lookup.task.get("video_id"),
                         "adopted the task an earlier attempt created (its video carries "
                         "this file's sha256)")
        return True

    def _wait_for_candidates(self, record: FileRecord, lookup: Lookup) -> bool:
        """Come back later when a candidate's content can only be read once it is indexed.

        True when the file was put back to wait; False when there is nothing
        to wait for, or it waited longer than a task may take.
        """
        if not lookup.waiting:
            self.waits.forget(record.id)
            logger.info("%s: no task of the same name holds this content for sure (%d "
                        "checked); sending it again", record.path, lookup.candidates)
            return False
        config = self.config()
        verdict = self.waits.wait(
            record.id, lookup, give_up_after=config.task_timeout_seconds,
            recheck=max(config.poll_interval_seconds, DUPLICATE_RECHECK_SECONDS))
        if verdict == "expired":
            return False
        if verdict == "started" or record.state != State.QUEUED:  # e.g. just validated
            ids = ", ".join(str(t.get("_id")) for t in lookup.waiting)
            detail = (f"waiting for task {ids} (same name) to finish indexing: only then "
                      "can its content tell whether the unanswered attempt created it")
            logger.info("%s: %s", record.path, detail)
            self.store.transition(record.id, State.QUEUED, detail)
        self.work.put(record.id)
        return True

    def deferred(self, file_id: int) -> bool:
        """Put a file back that is waiting for a candidate and not due to look again."""
        remaining = self.waits.remaining(file_id)
        if remaining <= 0:
            return False
        self.work.put(file_id)
        # Short turns shared by everything queued: idle, not spinning; busy, not blocking.
        self.stop.wait(min(remaining, DEFER_TURN_SECONDS) / max(1, self.work.qsize()))
        return True

    def handled_as_duplicate(self, record: FileRecord) -> bool:
        holder = self.store.content_holder(record)
        if holder is None:
            return False
        self.join_or_wait(record, holder)
        return True

    def join_or_wait(self, record: FileRecord, holder: FileRecord) -> None:
        """Share the holder's task, or wait at the back of the queue until it has one."""
        joined = join_holder(self.store, record, holder)
        if joined is not None and holder.task_id is not None and self.cluster is not None:
            self.cluster.claim_task(record, holder.task_id, holder.video_id)
        if joined == State.FINALIZING:
            self.finalize(record.id)
            return
        if joined is None:
            if record.state != State.QUEUED:
                self.store.transition(record.id, State.QUEUED,
                                      f"waiting for {holder.path}: same content, upload "
                                      "in progress")
            self.stop.wait(DUPLICATE_RECHECK_SECONDS)
            self.work.put(record.id)
