"""The ``POST /tasks`` path: one request carries the whole file and makes the task.

Intent comes first: ``uploading`` with the attempt number, start time, target index,
``upload_method`` ``tasks`` and "a task may exist" before the POST; the task id the
moment it answers. A definitive answer clears "a task may exist"; while it is set, the
next attempt first looks for that task (``dedupe``) and adopts it or waits for a
candidate (``adoption``) instead of sending the file again. A transient failure goes
round again after the gate's backoff; a pause waits at the gate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from watcherd.config import TASKS, Config, FolderConfig
from watcherd.errors import ApiRejected, EndpointGone, FileChanged, TransientError, UploadsPaused
from watcherd.ingest.adoption import Adoption
from watcherd.ingest.clustersteps import ClusterSteps
from watcherd.ingest.dedupe import find_earlier_task, note_possible_duplicates
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import index_gone
from watcherd.ingest.method import removed_endpoint
from watcherd.ingest.prepare import changed, ensure_unchanged
from watcherd.ingest.progress import Progress, ProgressLog, upload_summary
from watcherd.ingest.usermetadata import user_metadata_for
from watcherd.state.states import State
from watcherd.state.store import ContentTaken, FileRecord, Store
from watcherd.threads import beat
from watcherd.twelvelabs.client import TwelveLabsClient, UploadAborted

logger = logging.getLogger(__name__)


class TaskSend:
    def __init__(self, *, api: TwelveLabsClient, store: Store, gate: UploadGate,
                 config: Callable[[], Config], progress: Progress, adoption: Adoption,
                 cluster: ClusterSteps | None, stop: threading.Event,
                 abort: threading.Event) -> None:
        self.api, self.store, self.gate, self.config = api, store, gate, config
        self.progress, self.adoption, self.cluster = progress, adoption, cluster
        self.stop, self.abort = stop, abort

    def run(self, record: FileRecord, folder: FolderConfig) -> None:
        """Retry until the task exists, the file is refused, or we are stopped."""
        unconfirmed: list[tuple[dict[str, Any], str]] = []
        while not self.stop.is_set():
            beat()  # waiting out a backoff or a pause is not being stuck
            if not self.gate.wait(self.stop):
                continue
            ensure_unchanged(record)
            if record.task_may_exist:
                try:
                    lookup = find_earlier_task(self.api, record)
                except TransientError as exc:
                    self.gate.note_failure(exc)
                    continue
                except UploadsPaused as exc:
                    self.gate.pause(exc)
                    continue
                if self.adoption.adopted_or_waiting(record, lookup):
                    return
                unconfirmed = lookup.unconfirmed
            folder = self.config().folder_for(record.path) or folder  # a reload may change it
            if self.cluster is not None and self.cluster.settled_without_upload(
                    record, folder, self.adoption.record_task):
                return
            try:
                record = self.store.transition(
                    record.id, State.UPLOADING, f"attempt {record.attempts + 1}",
                    claim_content=folder.dedupe, attempts=record.attempts + 1,
                    upload_started_at=self.store.clock(), index_id=folder.index_id,
                    task_may_exist=1, upload_method=TASKS)
            except ContentTaken as exc:
                self.adoption.join_or_wait(record, exc.holder)
                return
            try:
                created = self._post(record, folder)
            except TransientError as exc:
                delay = self.gate.note_failure(exc)
                logger.warning("%s: upload attempt %d failed (%s); retrying in %.0fs",
                               record.path, record.attempts, exc.describe(), delay)
                record = self.store.transition(record.id, State.QUEUED,
                                               f"retrying in {delay:.0f}s: {exc.describe()}",
                                               task_may_exist=int(exc.maybe_created))
                continue
            except UploadsPaused as exc:
                self.gate.pause(exc)  # the pause check says so, with the fix, once per interval
                record = self.store.transition(record.id, State.QUEUED,
                                               f"uploads paused: {exc.describe()}",
                                               task_may_exist=0)
                continue
            except UploadAborted as exc:
                self.store.update(record.id, task_may_exist=0)  # the body never ended
                raise FileChanged(str(exc)) from exc
            self.gate.note_success()
            self.adoption.record_task(record, created["_id"], created.get("video_id"),
                                      upload_summary(record, self.store.clock()))
            note_possible_duplicates(self.store, record, unconfirmed, created["_id"])
            return
        # Stopped while waiting: leave it queued for the next start.
        self.store.transition(record.id, State.QUEUED, "stopped before upload")

    def _post(self, record: FileRecord, folder: FolderConfig) -> dict:
        journal = ProgressLog(record.path)

        def on_progress(done: int, total: int) -> None:
            beat()
            self.progress.update(record.id, done, total, record.path)
            journal.update(done, total)

        def should_abort() -> bool:
            # Checked once per 1 MiB block: a stat costs microseconds, and an
            # upload of a file that is being rewritten would be garbage. A lapsed
            # lease (we were stopped, or PostgreSQL is away): another host may take
            # the file over, so the body is not finished.
            return (self.abort.is_set() or changed(record)
                    or (self.cluster is not None and self.cluster.lease_lapsed()))

        try:
            return self.api.create_task(
                record.path,
                index_id=record.index_id,  # recorded with the intent: where the task will be
                filename=record.name,
                language=folder.language,
                user_metadata=user_metadata_for(record),
                on_progress=on_progress,
                should_abort=should_abort,
            )
        except ApiRejected as exc:
            # 404/410 while the index answers: the endpoint itself is gone (a refusal,
            # so no task was made). A gone index is the index pause's (re-raised).
            if removed_endpoint(exc) and not index_gone(self.api, record.index_id, exc):
                raise EndpointGone(exc.status, exc.code, exc.message) from exc
            raise
