"""The multipart stage: a file goes up as a resumable upload session and becomes an asset.

Facts: research round2-assets-models-multihost.md sections 0 and 1.2. Intent comes
before every effect: "a session may exist" (``task_may_exist`` while no ``upload_id``
is stored) before the create request, the session in the transaction that receives its
answer, each ETag as its PUT answers (``state.chunks``). So any attempt, after any crash,
starts from what the row says:

- a stored session is resumed if the file is still what it was made for (same sha256
  and size) and the API says it is ``active``: known ETags are reported again (harmless)
  and only the chunks it lacks are sent; expired, failed or unknown: a new session;
- "a session may exist" without one stored (the create answer was lost): the list of
  incomplete sessions is searched, and a session adopted only when exactly one matches
  the file's size and the time of the intent, and nothing was sent to it yet;
- else a new session is created.

When every chunk is reported the session completes; the row goes to ``indexing`` with
its ``asset_id`` (the indexing step takes it from there). A file that changes mid-upload
gives its session up (there is no abort call: it expires) and settles again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from watcherd.config import MULTIPART, Config, FolderConfig
from watcherd.errors import ApiError, ApiRejected, FileChanged, TransientError, UploadsPaused
from watcherd.ingest.chunks import ChunkRun, ChunksStopped, Hooks, SessionGone, SessionPlan
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.progress import Progress, ProgressLog, upload_summary
from watcherd.ingest.usermetadata import user_metadata_for
from watcherd.state.chunks import ChunkLedger, SessionPrint
from watcherd.state.schema import FileRecord
from watcherd.state.states import State
from watcherd.state.store import Store
from watcherd.threads import beat
from watcherd.twelvelabs.assets import AssetsApi, ChunkUrl
from watcherd.twelvelabs.client import UploadAborted
from watcherd.units import human_bytes

logger = logging.getLogger(__name__)

T = TypeVar("T")
# A session in the incomplete list is this file's lost one only if it was created this
# close to the intent (clock skew between us and the API, plus the request's own time).
ADOPT_WINDOW_SECONDS = 300.0
# Sessions one attempt may go through before it counts as a failed attempt (backoff).
SESSIONS_PER_ATTEMPT = 3
NO_SESSION: dict[str, Any] = {"upload_id": None, "asset_id": None, "chunk_size": None,
                              "total_chunks": None, "session_expires_at": None}


@dataclass(frozen=True)
class LiveSession:
    upload_id: str
    asset_id: str | None            # None for an adopted session until a report names it
    chunk_size: int
    total_chunks: int
    upload_headers: dict[str, str]
    urls: tuple[ChunkUrl, ...] = ()
    done_remotely: frozenset[int] = frozenset()
    completed: bool = False


@dataclass
class FileChecks:
    """The worker's checks of the source file against its row."""
    ensure_unchanged: Callable[[FileRecord], None]  # raises FileChanged
    changed: Callable[[FileRecord], bool]


class MultipartStage:
    def __init__(self, *, store: Store, assets: Callable[[], AssetsApi], gate: UploadGate,
                 connections: threading.Semaphore, progress: Progress,
                 config: Callable[[], Config], checks: FileChecks,
                 stop: threading.Event, abort: threading.Event) -> None:
        self.store, self.assets, self.gate = store, assets, gate
        self.ledger = ChunkLedger(store)
        self.connections, self.progress, self.config = connections, progress, config
        self.checks, self.stop, self.abort = checks, stop, abort
        # Several hosts: called before every request of the file being sent (the claim's
        # fence, ``clustersteps``); raises ClaimLost or CoordinationUnavailable.
        self.fence: Callable[[], None] | None = None

    def run(self, record: FileRecord, folder: FolderConfig) -> None:
        """Until the row is handed to indexing, or stopped (then queued, session kept).

        Raises ``ContentTaken`` (another row holds the content), ``FileChanged``,
        ``ApiRejected``/``MultipartNotEnabled`` (the create was refused)."""
        while not self.stop.is_set():
            beat()
            if not self.gate.wait(self.stop):
                continue
            record = self.store.get(record.id)
            self.checks.ensure_unchanged(record)
            folder = self.config().folder_for(record.path) or folder  # a reload may change it
            record = self.store.transition(
                record.id, State.UPLOADING, f"attempt {record.attempts + 1} (multipart)",
                claim_content=folder.dedupe, attempts=record.attempts + 1,
                index_id=folder.index_id, upload_method=MULTIPART)
            try:
                self._attempt(record)
            except TransientError as exc:
                delay = self.gate.note_failure(exc)
                logger.warning("%s: upload attempt %d failed (%s); retrying in %.0fs",
                               record.path, record.attempts, exc.describe(), delay)
                self.store.transition(record.id, State.QUEUED,
                                      f"retrying in {delay:.0f}s: {exc.describe()}")
                continue
            except UploadsPaused as exc:
                self.gate.pause(exc)
                self.store.transition(record.id, State.QUEUED,
                                      f"uploads paused: {exc.describe()}")
                continue
            except ChunksStopped:
                break
            except UploadAborted as exc:
                self._aborted(self.store.get(record.id), exc)
            self.gate.note_success()
            return
        self.store.transition(record.id, State.QUEUED, "stopped; an upload session, if "
                              "any, is resumed at the next start")

    def _attempt(self, record: FileRecord) -> None:
        for _ in range(SESSIONS_PER_ATTEMPT):
            record = self._inherited(record)
            session = self._resumed(record) or self._adopted(record) or self._created(record)
            try:
                self._complete(self.store.get(record.id), session)
                return
            except SessionGone as exc:
                record = self._give_up(self.store.get(record.id),
                                       f"session {session.upload_id} ended: {exc}")
        raise TransientError(None, "session_gone", f"{SESSIONS_PER_ATTEMPT} upload sessions "
                             "in a row ended before the upload completed")

    # -- which session ----------------------------------------------------------------

    def _resumed(self, record: FileRecord) -> LiveSession | None:
        upload_id = record.upload_id
        if upload_id is None or record.chunk_size is None or record.total_chunks is None:
            return None
        fingerprint = self.ledger.fingerprint(upload_id)
        if fingerprint is None or (fingerprint.sha256, fingerprint.size) != \
                (record.sha256, record.size):
            self._give_up(record, f"the file is no longer what session {upload_id} was for")
            return None
        try:
            status = self._api(lambda: self.assets().upload_status(upload_id))
        except ApiRejected as exc:  # 404 "Upload not found."
            self._give_up(record, f"session {upload_id} is unknown: {exc.describe()}")
            return None
        state = status.get("status")
        if state not in ("active", "completed"):
            self._give_up(record, f"session {upload_id} is {state}")
            return None
        done = frozenset(int(c["index"]) for c in status.get("uploaded_chunks") or []
                         if c.get("status") == "completed")
        logger.info("%s: resuming session %s (%s): %d of %d chunk(s) completed", record.path,
                    upload_id, state, len(done), record.total_chunks)
        return LiveSession(upload_id, record.asset_id, record.chunk_size, record.total_chunks,
                           fingerprint.upload_headers, done_remotely=done,
                           completed=state == "completed")

    def _inherited(self, record: FileRecord) -> FileRecord:
        """A session named by an earlier owner's claim (several hosts, ``takeover``) is in
        no ledger here: the incomplete list gives its shape, and the claim's sha256 and
        size (what this file was confirmed as) are what it was made for."""
        upload_id = record.upload_id
        if upload_id is None or record.chunk_size is not None \
                or self.ledger.fingerprint(upload_id) is not None:
            return record
        listed = self._api(lambda: self.assets().list_incomplete_uploads())
        found = next((s for s in listed if s.get("upload_id") == upload_id), None)
        if found is None:
            return self._give_up(record, f"session {upload_id} of the earlier owner is no "
                                         "longer open")
        detail = f"continuing session {upload_id} of the earlier owner"
        logger.info("%s: %s", record.path, detail)
        self._open(record, SessionPrint(upload_id, record.sha256 or "", record.size or 0, {}),
                   detail, upload_id=upload_id, asset_id=record.asset_id,
                   chunk_size=int(found["chunk_size"]), total_chunks=int(found["total_chunks"]),
                   session_expires_at=_epoch(found.get("expires_at")))
        return self.store.get(record.id)

    def _adopted(self, record: FileRecord) -> LiveSession | None:
        """The session a lost create answer left, when exactly one fits and is untouched."""
        if not record.task_may_exist or record.upload_id is not None:
            return None
        intent = record.upload_started_at or 0.0
        try:
            listed = self._api(lambda: self.assets().list_incomplete_uploads())
        except ApiRejected as exc:
            logger.warning("%s: cannot list incomplete sessions (%s); a new session is made",
                           record.path, exc.describe())
            return None
        matches = [s for s in listed
                   if s.get("status", "active") == "active" and s.get("total_size") == record.size
                   and abs(_epoch(s.get("created_at")) - intent) <= ADOPT_WINDOW_SECONDS]
        if len(matches) != 1:
            logger.info("%s: an earlier create may have made a session; %d incomplete "
                        "session(s) match its size and time, so none is adopted (they "
                        "expire by themselves)", record.path, len(matches))
            return None
        found = matches[0]
        upload_id = str(found["upload_id"])
        try:
            status = self._api(lambda: self.assets().upload_status(upload_id))
        except ApiRejected:  # gone since it was listed
            return None
        if status.get("chunks_completed") or status.get("uploaded_size"):
            logger.info("%s: session %s has chunks already; not adopting it", record.path,
                        upload_id)
            return None
        chunk_size, total = int(found["chunk_size"]), int(found["total_chunks"])
        detail = (f"adopted session {upload_id} from the list of incomplete sessions (the "
                  "answer to its create was lost)")
        logger.info("%s: %s", record.path, detail)
        self._open(record, SessionPrint(upload_id, record.sha256 or "", record.size or 0, {}),
                   detail, upload_id=upload_id, asset_id=None,
                   chunk_size=chunk_size, total_chunks=total,
                   session_expires_at=_epoch(found.get("expires_at")))
        return LiveSession(upload_id, None, chunk_size, total, {})

    def _created(self, record: FileRecord) -> LiveSession:
        self.store.update(record.id, task_may_exist=1, upload_started_at=self.store.clock())
        try:
            created = self._api(lambda: self.assets().create_upload(
                record.name, record.size or 0, user_metadata=user_metadata_for(record)))
        except TransientError as exc:
            self.store.update(record.id, task_may_exist=int(exc.maybe_created))
            raise
        except ApiError:
            self.store.update(record.id, task_may_exist=0)  # refused: nothing was made
            raise
        detail = (f"session {created.upload_id}: {created.total_chunks} chunk(s) of "
                  f"{human_bytes(created.chunk_size)}, expires {created.expires_at}")
        logger.info("%s: %s", record.path, detail)
        self._open(record, SessionPrint(created.upload_id, record.sha256 or "",
                                        record.size or 0, created.upload_headers), detail,
                   upload_id=created.upload_id, asset_id=created.asset_id,
                   chunk_size=created.chunk_size, total_chunks=created.total_chunks,
                   session_expires_at=_epoch(created.expires_at))
        return LiveSession(created.upload_id, created.asset_id, created.chunk_size,
                           created.total_chunks, created.upload_headers, created.upload_urls)

    def _open(self, record: FileRecord, fingerprint: SessionPrint, detail: str,
              **session: Any) -> None:
        self.ledger.open_session(record.id, State.UPLOADING, detail, fingerprint,
                                 task_may_exist=0, **session)
        if self.fence is not None:  # several hosts: the claim learns the ids before any PUT
            self.fence()

    def _give_up(self, record: FileRecord, why: str) -> FileRecord:
        """Forget the row's session (it expires by itself); the next one starts afresh."""
        logger.warning("%s: %s; giving the session up", record.path, why)
        return self.ledger.close_session(record.id, record.state, f"{why}: session given up",
                                         **NO_SESSION)

    # -- sending and completing -------------------------------------------------------

    def _complete(self, record: FileRecord, session: LiveSession) -> None:
        answer = None if session.completed else self._send(record, session)
        asset_id = (answer or {}).get("asset_id") or session.asset_id or \
            self.store.get(record.id).asset_id
        if not (answer and ("url" in answer or answer.get("total_completed", 0)
                            >= session.total_chunks)) and not session.completed:
            try:
                status = self._api(lambda: self.assets().upload_status(session.upload_id))
            except ApiRejected as exc:
                raise SessionGone(exc.describe()) from exc
            if status.get("status") != "completed":
                raise TransientError(None, "upload_incomplete", (
                    f"session {session.upload_id} is {status.get('status')} with "
                    f"{status.get('chunks_completed')} of {session.total_chunks} chunk(s) "
                    "after every chunk was reported"))
        if not asset_id:
            raise SessionGone("it completed, but which asset it made was never said")
        self.ledger.close_session(
            record.id, State.INDEXING, upload_summary(record, self.store.clock()),
            upload_method=MULTIPART, asset_id=str(asset_id), uploaded_at=self.store.clock(),
            task_id=None, indexed_asset_id=None, task_may_exist=0)

    def _send(self, record: FileRecord, session: LiveSession) -> dict[str, Any] | None:
        known = self.ledger.etags(session.upload_id)
        missing = [i for i in range(1, session.total_chunks + 1)
                   if i not in known and i not in session.done_remotely]
        to_report = {i: etag for i, etag in known.items() if i not in session.done_remotely}
        plan = SessionPlan(session.upload_id, session.chunk_size, session.total_chunks,
                           session.upload_headers, record.path, record.size or 0)
        run = ChunkRun(plan, self.assets(), self._hooks(record, session),
                       concurrency=self.config().chunk_concurrency,
                       connections=self.connections)
        return run.run(missing, to_report, session.urls)

    def _hooks(self, record: FileRecord, session: LiveSession) -> Hooks:
        journal = ProgressLog(record.path)
        size, total = record.size or 0, session.total_chunks
        learned: list[str] = []

        def on_progress(sent: int, chunks: int) -> None:
            self.progress.update(record.id, sent, size, record.path, chunks=(chunks, total))
            journal.update(sent, size, chunks=(chunks, total))

        def reported(indexes: list[int], answer: dict[str, Any]) -> None:
            self.ledger.mark_reported(session.upload_id, indexes)
            if session.asset_id is None and not learned and answer.get("asset_id"):
                learned.append(str(answer["asset_id"]))  # an adopted session names it now
                self.store.update(record.id, asset_id=learned[0])

        return Hooks(
            api_call=self._api,
            record_etag=lambda index, etag: self.ledger.record_etag(
                record.id, session.upload_id, index, etag),
            mark_reported=reported, should_stop=self.stop.is_set,
            should_abort=lambda: self.abort.is_set() or self.checks.changed(record),
            on_progress=on_progress)

    def _aborted(self, record: FileRecord, exc: UploadAborted) -> None:
        if self.checks.changed(record):
            self._give_up(record, "the file changed mid-upload")
            raise FileChanged("the file changed mid-upload; its session was given up") \
                from exc
        raise FileChanged("upload aborted by the shutdown; its session is resumed after "
                          "the file settles") from exc

    def _api(self, call: Callable[[], T]) -> T:
        """An API call, once the shared gate lets uploads go (and the claim, with several
        hosts)."""
        while not self.gate.wait(self.stop):
            beat()
            if self.stop.is_set():
                raise ChunksStopped("stopped while uploads were held back")
        if self.fence is not None:
            self.fence()
        return call()


def _epoch(value: Any) -> float:
    """An RFC 3339 time from the API as epoch seconds (0 when missing or unreadable)."""
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0
