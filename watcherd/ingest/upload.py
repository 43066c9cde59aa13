"""Upload workers: validate, hash, then stream each settled file to Twelve Labs.

The exception type decides a file's fate:
``MediaRejected``/``ApiRejected`` → failed/, ``TransientError`` → retry after
the shared backoff, ``UploadsPaused`` → back to the queue until the account
works, ``FileChanged`` → settle again, ``FileNotFoundError`` → vanished,
``PermissionError`` → settle again (the settler holds an unreadable file). An
``ApiRejected`` that turns out to mean "the index is gone" parks the file
until the index answers (``indexpause``); any other exception puts the file
back to settle again (``putback``), the fifth in a row sends it to failed/.
Intent is written before every side effect: ``uploading`` with the attempt
number, start time, target index, the upload method and "a task may exist"
before the POST, the task id the moment it answers. A definitive answer clears
"a task may exist"; while it is set, the next attempt first looks for that task
(``dedupe``). A folder whose ``upload_method`` is ``auto`` or ``multipart``
goes through the multipart stage instead (``multipart``), which has its own
intent records (``upload_path`` chooses).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Unpack

from watcherd.cluster.coordinator import Coordinator
from watcherd.config import Config, FolderConfig
from watcherd.errors import (
    ApiRejected,
    ClaimLost,
    CoordinationUnavailable,
    EndpointGone,
    FileChanged,
    MediaRejected,
    TransientError,
    UploadsPaused,
)
from watcherd.ingest.clustersteps import ClusterSteps
from watcherd.ingest.dedupe import (
    CandidateWaits,
    Lookup,
    find_earlier_task,
    join_holder,
    note_possible_duplicates,
    sha256_file,
)
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses, index_gone
from watcherd.ingest.method import TASKS, UploadPaths, removed_endpoint
from watcherd.ingest.multipart import FileChecks, MultipartStage
from watcherd.ingest.progress import Progress, ProgressLog, upload_summary
from watcherd.ingest.putback import InternalErrors, give_up, put_back
from watcherd.ingest.routing import Routing
from watcherd.ingest.usermetadata import user_metadata_for
from watcherd.intake.metadata import gather
from watcherd.intake.presence import folder_reachable
from watcherd.media.validate import check_for_folder, raise_if_rejected
from watcherd.state.schema import Changes
from watcherd.state.states import State
from watcherd.state.store import AssetInFlight, ContentTaken, FileRecord, Store
from watcherd.threads import ServiceThread, beat
from watcherd.twelvelabs.assets import AssetsApi, MultipartNotEnabled
from watcherd.twelvelabs.client import TwelveLabsClient, UploadAborted

logger = logging.getLogger(__name__)

# A file waiting for an identical one to finish uploading is looked at again
# this often (it goes to the back of the queue, so it never blocks others).
DUPLICATE_RECHECK_SECONDS = 1.0
# Longest pause between taking a deferred file from the queue and putting it
# back, shared among all queued files so other files are never held up long.
DEFER_TURN_SECONDS = 0.5


def upload_path(record: FileRecord, route: str) -> str:
    """``multipart`` or ``tasks`` for this attempt: ``route``, the path the folder's
    ``upload_method`` and the account allow now (``method.UploadPaths``), unless an
    earlier attempt may have left a task or a session on its path: that path settles it
    first. An attempt on an unknown path (a row from before the method was recorded, a
    rebuilt database) is looked for as a task, as it always was."""
    if record.task_may_exist or record.upload_id:
        return record.upload_method or TASKS
    return route


class UploadWorker(ServiceThread):
    def __init__(
        self,
        name: str,
        *,
        config: Config,
        store: Store,
        api: TwelveLabsClient,
        gate: UploadGate,
        work: queue.Queue[int],
        finalize: Callable[[int], None],
        settle_again: Callable[[str], None],
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
        index_pauses: IndexPauses | None = None,
        internal_errors: InternalErrors | None = None,
        coordinator: Coordinator | None = None,
        hold_elsewhere: Callable[[str], None] | None = None,
        paths: UploadPaths | None = None,
        assets: AssetsApi | None = None,
        connections: threading.Semaphore | None = None,
    ) -> None:
        super().__init__(name)
        # Several hosts (``cluster``): claims, and the fence before each side effect.
        self.cluster = None if coordinator is None else ClusterSteps(
            coordinator, store, finalize=finalize, settle_again=settle_again,
            hold_elsewhere=hold_elsewhere or settle_again, requeue=self._requeue)
        self.config = config
        self.store = store
        self.api = api
        self.gate = gate
        self.work = work
        self.finalize = finalize
        self.settle_again = settle_again
        self.progress = progress or Progress()
        self.index_pauses = index_pauses or IndexPauses(lambda: self.config)
        self.internal_errors = internal_errors or InternalErrors()
        self.paths = paths or UploadPaths(lambda: self.config)
        self.routing = Routing(store, self.paths, work, self.stop_event)
        # Set by the daemon after the shutdown grace period: abort mid-upload.
        self.abort_event = threading.Event()
        self.waits = CandidateWaits(clock)
        self._assets = assets
        # ``connections``: the daemon's cap on chunk PUTs in flight, shared by every worker.
        self.multipart = MultipartStage(
            store=store, assets=self.assets, gate=gate,
            connections=connections or threading.BoundedSemaphore(config.max_chunk_connections),
            progress=self.progress, config=lambda: self.config,
            checks=FileChecks(self._ensure_unchanged, self._changed),
            stop=self.stop_event, abort=self.abort_event)

    def assets(self) -> AssetsApi:
        if self._assets is None:  # tests that only take the /tasks path never need one
            self._assets = AssetsApi(self.api)
        return self._assets

    def step(self) -> None:
        file_id = self.next_file(self.work)
        if file_id is None:
            return
        with self.hold(file_id):
            self.internal_errors.run(
                file_id, lambda: self.process(file_id),
                put_back=lambda detail: put_back(self.store, self.store.get(file_id), detail,
                                                 settle_again=self.settle_again,
                                                 finalize=self.finalize),
                give_up=lambda detail: give_up(self.store, file_id, detail, self.finalize))

    def process(self, file_id: int) -> None:
        """Take one queued file as far as it can go now."""
        if self._deferred(file_id):
            return
        record = self.store.get(file_id)
        folder = self.config.folder_for(record.path)
        if record.state != State.QUEUED or folder is None:
            return
        if self.index_pauses.park_if_paused(folder.index_id, file_id):
            return  # released when the index answers again
        try:
            if self.cluster is not None:
                claimed = self.cluster.claimed(record)
                if claimed is None:
                    return
                record = claimed
            if record.sha256 is None:  # not yet validated since it last settled
                record = self._validate(record, folder)
                record = self._hash(record)
            record = self._retarget(record, folder)
            if folder.dedupe and self._handled_as_duplicate(record):
                return
            if folder.dedupe and self.routing.from_asset(record, folder):
                return
            route = self.routing.path(record, folder)
            if route is None:
                return  # parked until a path its folder allows opens
            self._upload(record, folder, route)
        except FileChanged as exc:
            if self.cluster is not None:
                self.cluster.drop_claim(record, changed=self._changed(record))
            self.store.transition(file_id, State.SETTLING, str(exc))
            self.settle_again(record.path)
        except ClaimLost as exc:
            assert self.cluster is not None  # raised by it alone
            self.cluster.stand_down(record, exc)
        except CoordinationUnavailable:
            assert self.cluster is not None
            self.cluster.wait_for_coordination(file_id)
        except FileNotFoundError:
            self._missing(record, folder)
        except PermissionError as exc:  # permissions, not media: the settler holds it
            self.store.transition(file_id, State.SETTLING, f"cannot read it: {exc.strerror}")
            self.settle_again(record.path)
        except MediaRejected as exc:
            self._hash_for_sidecar(record)
            self._fail(file_id, exc.reason, rule=exc.rule)
        except AssetInFlight as exc:  # the claim at upload intent: another index's upload
            self.routing.wait_for_asset(record, exc.holder)
        except MultipartNotEnabled as exc:
            self.paths.refuse_multipart(exc)
            self.routing.closed(record, folder, f"not uploaded: {exc.describe()}")
        except EndpointGone as exc:
            self.paths.remove_tasks(exc)
            self.routing.closed(record, folder, f"not uploaded: {exc.describe()}")
        except ApiRejected as exc:
            if not self._parked_if_index_gone(record, folder, exc):
                self._fail(file_id, f"Twelve Labs rejected the upload: {exc.describe()}",
                           error_code=exc.code or f"http_{exc.status}")
        finally:
            self.progress.clear(file_id)

    # -- steps ---------------------------------------------------------------

    def _validate(self, record: FileRecord, folder: FolderConfig) -> FileRecord:
        self._ensure_unchanged(record)
        record = self.store.transition(record.id, State.VALIDATING, expect=(State.QUEUED,))
        # Metadata first: a metadata file that cannot be sent fails the file as surely
        # as a bad frame, and costs no decoding.
        self.store.update(record.id, metadata_json=gather(record.path, folder).stored())
        report = check_for_folder(record.path, folder)
        if report.facts:
            self.store.update(record.id, facts=report.facts.as_dict())
        if not report.accepted:
            # An unreadable file may simply still be written by a slow writer.
            self._ensure_unchanged(record)
        raise_if_rejected(report)
        return record

    def _hash(self, record: FileRecord) -> FileRecord:
        def each_block() -> None:
            beat()
            if self.abort_event.is_set():
                raise FileChanged("hashing interrupted by shutdown")

        sha256 = sha256_file(record.path, each_block)
        self._ensure_unchanged(record)
        self.store.update(record.id, sha256=sha256)
        return self.store.get(record.id)

    def _hash_for_sidecar(self, record: FileRecord) -> None:
        """Rejected files get a sha256 too, so operators can match them up."""
        try:
            self._hash(self.store.get(record.id))
        except (OSError, FileChanged) as exc:
            logger.debug("%s: no sha256 for the sidecar: %s", record.path, exc)

    def _upload(self, record: FileRecord, folder: FolderConfig, route: str) -> None:
        """Send the file on the path ``upload_path`` chooses."""
        if upload_path(record, route) == TASKS:
            self._upload_task(record, folder)
            return
        if self.cluster is not None:
            if self.cluster.settled_without_upload(record, folder, self._record_task):
                return
            cluster, file_id = self.cluster, record.id
            self.multipart.fence = lambda: cluster.fence_request(file_id)
        try:
            self.multipart.run(record, folder)
        except ContentTaken as exc:
            self._join_or_wait(self.store.get(record.id), exc.holder)
            return
        finally:
            self.multipart.fence = None
        done = self.store.get(record.id)
        if self.cluster is not None and done.state == State.INDEXING:
            self.cluster.claim_uploaded(done)

    def _upload_task(self, record: FileRecord, folder: FolderConfig) -> None:
        """``POST /tasks``: retry until the task exists, the file is refused, or we are
        stopped."""
        unconfirmed: list[tuple[dict[str, Any], str]] = []
        while not self.stop_event.is_set():
            beat()  # waiting out a backoff or a pause is not being stuck
            if not self.gate.wait(self.stop_event):
                continue
            self._ensure_unchanged(record)
            if record.task_may_exist:
                try:
                    lookup = find_earlier_task(self.api, record)
                except TransientError as exc:
                    self.gate.note_failure(exc)
                    continue
                except UploadsPaused as exc:
                    self._pause(exc)
                    continue
                if self._adopted_or_waiting(record, lookup):
                    return
                unconfirmed = lookup.unconfirmed
            folder = self.config.folder_for(record.path) or folder  # a reload may change it
            if self.cluster is not None and self.cluster.settled_without_upload(
                    record, folder, self._record_task):
                return
            try:
                record = self.store.transition(
                    record.id, State.UPLOADING, f"attempt {record.attempts + 1}",
                    claim_content=folder.dedupe, attempts=record.attempts + 1,
                    upload_started_at=self.store.clock(), index_id=folder.index_id,
                    task_may_exist=1, upload_method=TASKS)
            except ContentTaken as exc:
                self._join_or_wait(record, exc.holder)
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
                self._pause(exc)
                record = self.store.transition(record.id, State.QUEUED,
                                               f"uploads paused: {exc.describe()}",
                                               task_may_exist=0)
                continue
            except UploadAborted as exc:
                self.store.update(record.id, task_may_exist=0)  # the body never ended
                raise FileChanged(str(exc)) from exc
            self.gate.note_success()
            self._record_task(record, created["_id"], created.get("video_id"),
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
            return (self.abort_event.is_set() or self._changed(record)
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

    def _adopted_or_waiting(self, record: FileRecord, lookup: Lookup) -> bool:
        """Adopt the confirmed task, or come back when a candidate can be checked."""
        if lookup.task is None:
            return self._wait_for_candidates(record, lookup)
        self.waits.forget(record.id)
        self._record_task(record, lookup.task["_id"], lookup.task.get("video_id"),
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
        verdict = self.waits.wait(
            record.id, lookup, give_up_after=self.config.task_timeout_seconds,
            recheck=max(self.config.poll_interval_seconds, DUPLICATE_RECHECK_SECONDS))
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

    def _deferred(self, file_id: int) -> bool:
        """Put a file back that is waiting for a candidate and not due to look again."""
        remaining = self.waits.remaining(file_id)
        if remaining <= 0:
            return False
        self.work.put(file_id)
        # Short turns shared by everything queued: idle, not spinning; busy, not blocking.
        self.stop_event.wait(min(remaining, DEFER_TURN_SECONDS) / max(1, self.work.qsize()))
        return True

    def _handled_as_duplicate(self, record: FileRecord) -> bool:
        holder = self.store.content_holder(record)
        if holder is None:
            return False
        self._join_or_wait(record, holder)
        return True

    def _join_or_wait(self, record: FileRecord, holder: FileRecord) -> None:
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
            self.stop_event.wait(DUPLICATE_RECHECK_SECONDS)
            self.work.put(record.id)

    def _parked_if_index_gone(self, record: FileRecord, folder: FolderConfig,
                              exc: ApiRejected) -> bool:
        """Keep the file in the inbox if the refusal was about a vanished index.

        If asking about the index fails, nobody can tell yet: the file goes
        round again rather than to failed/ on a guess.
        """
        try:
            if not index_gone(self.api, folder.index_id, exc):
                return False
            self.index_pauses.pause(folder.index_id, exc)
        except TransientError as probe:
            self.gate.note_failure(probe)
        except UploadsPaused as probe:
            self._pause(probe)
        self.store.transition(record.id, State.QUEUED, f"not uploaded: {exc.describe()}")
        if not self.index_pauses.park_if_paused(folder.index_id, record.id):
            self.work.put(record.id)
        return True

    def _missing(self, record: FileRecord, folder: FolderConfig) -> None:
        """A missing file in a reachable folder is gone; in an unreachable one, wait."""
        if folder_reachable(folder.path):
            self.store.transition(record.id, State.VANISHED, "file disappeared before upload",
                                  finished_at=self.store.clock())
            if self.cluster is not None:
                self.cluster.close_claim(record, "file disappeared before upload")
            return
        self.store.transition(record.id, State.SETTLING,
                              f"folder {folder.path} is unreachable; waiting for it")
        self.settle_again(record.path)

    def _record_task(self, record: FileRecord, task_id: str, video_id: str | None,
                     how: str) -> None:
        self.store.transition(record.id, State.INDEXING, how, task_id=task_id,
                              video_id=video_id, uploaded_at=self.store.clock(),
                              task_may_exist=0)
        if self.cluster is not None:
            self.cluster.claim_task(record, task_id, video_id)

    def _retarget(self, record: FileRecord, folder: FolderConfig) -> FileRecord:
        """A reload changed the folder's index: a file not sent yet goes to the new one.

        Not while an earlier attempt may have created a task: that one is
        looked for in the index it was sent to, and the next intent retargets.
        """
        if record.index_id == folder.index_id or record.task_may_exist:
            return record
        detail = (f"the folder's index changed from {record.index_id} to {folder.index_id} "
                  "(reload); it goes to the new index")
        logger.info("%s: %s", record.path, detail)
        return self.store.transition(record.id, record.state, detail,
                                     index_id=folder.index_id)

    # -- helpers -------------------------------------------------------------

    def _requeue(self, file_id: int, after: float) -> None:
        """Back of the queue after ``after`` s (cut short by a stop)."""
        self.stop_event.wait(after)
        self.work.put(file_id)

    def _ensure_unchanged(self, record: FileRecord) -> None:
        st = os.stat(record.path)  # FileNotFoundError → vanished
        if (st.st_size, st.st_mtime_ns) != (record.size, record.mtime_ns):
            raise FileChanged(f"file changed since it settled ({record.size} → {st.st_size} bytes)")

    @staticmethod
    def _changed(record: FileRecord) -> bool:
        try:
            st = os.stat(record.path)
        except OSError:
            return True
        return (st.st_size, st.st_mtime_ns) != (record.size, record.mtime_ns)

    def _pause(self, exc: UploadsPaused) -> None:
        self.gate.pause(exc)  # the pause check says so, with the fix, once per interval

    def _fail(self, file_id: int, reason: str, /, **fields: Unpack[Changes]) -> None:
        changes: Changes = {**fields, "outcome": "failed", "reason": reason}
        self.store.transition(file_id, State.FINALIZING, reason, **changes)
        self.finalize(file_id)

