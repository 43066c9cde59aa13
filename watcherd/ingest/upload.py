"""Upload workers: take each queued file as far as it can go now, and decide its fate.

A worker claims the file (``clustersteps``, several hosts), prepares it (``prepare``:
validate, hash, retarget), lets a duplicate share a task or wait (``adoption``), asks
whether it needs an upload at all and on which path (``routing``), then sends it: by
``POST /tasks`` (``tasksend``) or as a multipart upload (``multipart``); ``upload_path``
chooses. The exception type decides a file's fate:
``MediaRejected``/``ApiRejected`` → failed/, ``TransientError`` → retry after
the shared backoff, ``UploadsPaused`` → back to the queue until the account
works, ``FileChanged`` → settle again, ``FileNotFoundError`` → vanished,
``PermissionError`` → settle again (the settler holds an unreadable file). An
``ApiRejected`` that turns out to mean "the index is gone" parks the file
until the index answers (``indexpause``); any other exception puts the file
back to settle again (``putback``), the fifth in a row sends it to failed/.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Unpack

from watcherd.cluster.coordinator import Coordinator
from watcherd.config import TASKS, Config, FolderConfig
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
from watcherd.ingest.adoption import Adoption
from watcherd.ingest.clustersteps import ClusterSteps
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses, index_gone
from watcherd.ingest.method import UploadPaths
from watcherd.ingest.multipart import FileChecks, MultipartStage
from watcherd.ingest.prepare import (
    changed,
    ensure_unchanged,
    hash_contents,
    hash_for_sidecar,
    retarget,
    validate,
)
from watcherd.ingest.progress import Progress
from watcherd.ingest.putback import InternalErrors, give_up, put_back
from watcherd.ingest.routing import Routing
from watcherd.ingest.tasksend import TaskSend
from watcherd.intake.presence import folder_reachable
from watcherd.state.schema import Changes
from watcherd.state.states import State
from watcherd.state.store import AssetInFlight, ContentTaken, FileRecord, Store
from watcherd.threads import ServiceThread
from watcherd.twelvelabs.assets import AssetsApi, MultipartNotEnabled
from watcherd.twelvelabs.client import TwelveLabsClient

logger = logging.getLogger(__name__)

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
        self._assets = assets
        self.adoption = Adoption(store=store, config=lambda: self.config, work=work,
                                 stop=self.stop_event, finalize=finalize, cluster=self.cluster,
                                 clock=clock)
        self.tasks = TaskSend(api=api, store=store, gate=gate, config=lambda: self.config,
                              progress=self.progress, adoption=self.adoption,
                              cluster=self.cluster, stop=self.stop_event, abort=self.abort_event)
        # ``connections``: the daemon's cap on chunk PUTs in flight, shared by every worker.
        self.multipart = MultipartStage(
            store=store, assets=self.assets, gate=gate,
            connections=connections or threading.BoundedSemaphore(config.max_chunk_connections),
            progress=self.progress, config=lambda: self.config,
            checks=FileChecks(ensure_unchanged, changed),
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
        if self.adoption.deferred(file_id):
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
                record = validate(self.store, record, folder)
                record = hash_contents(self.store, record, self.abort_event)
            record = retarget(self.store, record, folder)
            if folder.dedupe and self.adoption.handled_as_duplicate(record):
                return
            if folder.dedupe and self.routing.from_asset(record, folder):
                return
            route = self.routing.path(record, folder)
            if route is None:
                return  # parked until a path its folder allows opens
            self._upload(record, folder, route)
        except FileChanged as exc:
            if self.cluster is not None:
                self.cluster.drop_claim(record, changed=changed(record))
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
            hash_for_sidecar(self.store, record, self.abort_event)
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

    def _upload(self, record: FileRecord, folder: FolderConfig, route: str) -> None:
        """Send the file on the path ``upload_path`` chooses."""
        if upload_path(record, route) == TASKS:
            self.tasks.run(record, folder)
            return
        if self.cluster is not None:
            if self.cluster.settled_without_upload(record, folder,
                                                   self.adoption.record_task):
                return
            cluster, file_id = self.cluster, record.id
            self.multipart.fence = lambda: cluster.fence_request(file_id)
        try:
            self.multipart.run(record, folder)
        except ContentTaken as exc:
            self.adoption.join_or_wait(self.store.get(record.id), exc.holder)
            return
        finally:
            self.multipart.fence = None
        done = self.store.get(record.id)
        if self.cluster is not None and done.state == State.INDEXING:
            self.cluster.claim_uploaded(done)

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

    # -- helpers -------------------------------------------------------------

    def _requeue(self, file_id: int, after: float) -> None:
        """Back of the queue after ``after`` s (cut short by a stop)."""
        self.stop_event.wait(after)
        self.work.put(file_id)

    def _pause(self, exc: UploadsPaused) -> None:
        self.gate.pause(exc)  # the pause check says so, with the fix, once per interval

    def _fail(self, file_id: int, reason: str, /, **fields: Unpack[Changes]) -> None:
        changes: Changes = {**fields, "outcome": "failed", "reason": reason}
        self.store.transition(file_id, State.FINALIZING, reason, **changes)
        self.finalize(file_id)

