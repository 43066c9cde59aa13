"""Never pay for one upload twice, and never take another file's task for ours.

Two questions are asked before any upload:

* Did an earlier attempt of ours already create the task? ``POST /tasks``
  has no idempotency key, so a timeout or a reset after the whole body was
  sent may hide a task that exists. Only then (the row's ``task_may_exist``)
  ``GET /tasks`` by index and filename finds candidates, and a candidate is
  adopted only when its video carries the sha256 we sent in
  ``user_metadata``: same name and time prove nothing (two cameras both
  write ``0001.mp4``; ``rec.mp4`` comes back every day).
* Is this content (sha256) already indexed, or being indexed, in this
  index? Then the file joins that task instead of sending the bytes again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from watcherd.errors import ApiRejected
from watcherd.state.schema import Changes
from watcherd.state.states import TERMINAL_TASK_STATUSES, State
from watcherd.state.store import FileRecord, Store
from watcherd.twelvelabs.client import TwelveLabsClient

logger = logging.getLogger(__name__)

HASH_BLOCK = 1 << 20


def sha256_file(path: str, each_block: Callable[[], None] | None = None) -> str:
    """The content identity used for dedupe; ``each_block`` runs after every 1 MiB read."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
            if each_block is not None:
                each_block()
    return digest.hexdigest()


# How far before our attempt's start (our clock) a task may be created (the
# API's clock) and still be looked at. Wide, because clocks disagree and the
# content proof, not the time, decides; it only keeps the lists short.
ADOPT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Lookup:
    """What the API knows of an earlier attempt for one file.

    ``task``: a task whose video carries our sha256 (adopt it).
    ``waiting``: candidates still being indexed; their video, and so their
    ``user_metadata``, only exists once indexing ends.
    ``unconfirmed``: candidates whose content cannot be checked, with why.
    ``candidates``: how many tasks of the same name were looked at.
    """

    task: dict[str, Any] | None = None
    candidates: int = 0
    waiting: list[dict[str, Any]] = field(default_factory=list)
    unconfirmed: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def find_earlier_task(api: TwelveLabsClient, record: FileRecord) -> Lookup:
    """Look in ``record.index_id`` (where the earlier attempt went) for its task.

    ``upload_started_at == 0`` means "an upload may have happened at an
    unknown time" (the database was rebuilt): no time bound then.
    """
    since = None
    if record.upload_started_at:
        started = datetime.fromtimestamp(record.upload_started_at, UTC)
        since = (started - ADOPT_WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ")
    duration = (record.media_facts() or {}).get("duration_seconds")
    tasks = [t for t in api.list_tasks(index_id=record.index_id, filename=record.name,
                                       created_at=since)
             if could_be_ours(t, record.name, duration)]
    if not tasks:
        return Lookup()
    listed = {v.get("_id"): v.get("user_metadata") for v in
              api.list_videos(index_id=record.index_id, filename=record.name, created_at=since)}
    ours, waiting, unconfirmed = [], [], []
    for task in tasks:
        verdict, why = _content_verdict(api, record, task, listed)
        if verdict == "ours":
            ours.append(task)
        elif verdict == "waiting":
            waiting.append(task)
        elif verdict == "unknown":
            unconfirmed.append((task, why))
        else:
            logger.debug("%s: task %s has the same name but other content (%s); not ours",
                         record.path, task.get("_id"), why)
    if ours:
        return Lookup(task=_earliest(ours), candidates=len(tasks))
    return Lookup(waiting=waiting, unconfirmed=unconfirmed, candidates=len(tasks))


def could_be_ours(task: dict[str, Any], filename: str, duration: float | None) -> bool:
    """The list filter already matched index and name; rule out what we can."""
    meta = task.get("system_metadata") or task.get("metadata") or {}
    if meta.get("filename") not in (None, filename):
        return False
    remote = meta.get("duration")
    return remote is None or duration is None or abs(float(remote) - duration) <= 1.0


def _content_verdict(api: TwelveLabsClient, record: FileRecord, task: dict[str, Any],
                     listed: dict[Any, Any]) -> tuple[str, str]:
    """("ours" | "other" | "waiting" | "unknown", why) for one candidate task."""
    video_id = task.get("video_id")
    sent = _sent_sha256(listed.get(video_id)) if video_id else None
    if sent is not None:
        return ("ours" if sent == record.sha256 else "other"), f"video {video_id} has {sent}"
    status = task.get("status")
    if status not in TERMINAL_TASK_STATUSES:
        return "waiting", f"task is {status or 'not finished'}"
    if status != "ready" or not video_id:
        return "unknown", f"task is {status} and has no video to read"
    try:
        video = api.get_video(record.index_id, video_id)
    except ApiRejected as exc:
        return "unknown", f"video {video_id} cannot be read ({exc.describe()})"
    sent = _sent_sha256(video.get("user_metadata"))
    if sent is None:
        return "unknown", f"video {video_id} carries no sha256 in its user_metadata"
    return ("ours" if sent == record.sha256 else "other"), f"video {video_id} has {sent}"


def _sent_sha256(user_metadata: Any) -> str | None:
    """The sha256 a watcherd upload put in ``user_metadata`` (an object or its JSON text)."""
    if isinstance(user_metadata, str):
        try:
            user_metadata = json.loads(user_metadata)
        except ValueError:
            return None
    value = user_metadata.get("sha256") if isinstance(user_metadata, dict) else None
    return value if isinstance(value, str) else None


def _earliest(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return min(tasks, key=lambda t: t.get("created_at") or "")


class CandidateWaits:
    """Files waiting for a candidate task to finish indexing, and when each looks again.

    Monotonic and in memory (one per worker): after a restart a wait just
    starts over, and a worker that never saw a file's wait looks at once.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._since: dict[int, float] = {}
        self._recheck_at: dict[int, float] = {}

    def wait(self, file_id: int, lookup: Lookup, *, recheck: float,
             give_up_after: float) -> str:
        """"started" or "waiting" (look again in ``recheck`` s), or "expired": then the
        candidates join ``lookup.unconfirmed`` and the file is uploaded again."""
        now = self.clock()
        first = file_id not in self._since
        since = self._since.setdefault(file_id, now)
        if now - since > give_up_after:
            self.forget(file_id)
            lookup.unconfirmed.extend(
                (t, f"it was still {t.get('status')} after {now - since:.0f}s")
                for t in lookup.waiting)
            return "expired"
        self._recheck_at[file_id] = now + recheck
        return "started" if first else "waiting"

    def remaining(self, file_id: int) -> float:
        """Seconds until ``file_id`` may look again (0 when due or not waiting)."""
        due = self._recheck_at.get(file_id)
        if due is None or due <= self.clock():
            self._recheck_at.pop(file_id, None)
            return 0.0
        return due - self.clock()

    def forget(self, file_id: int) -> None:
        self._since.pop(file_id, None)
        self._recheck_at.pop(file_id, None)


def note_possible_duplicates(store: Store, record: FileRecord,
                             unconfirmed: list[tuple[dict[str, Any], str]], task_id: str) -> None:
    """A candidate we could not check may be an earlier upload of this file: say so."""
    for task, why in unconfirmed:
        text = (f"possible duplicate: task {task.get('_id')} (video {task.get('video_id')}) "
                f"may hold an earlier attempt of this file, but its content could not be "
                f"confirmed ({why}); uploaded again as task {task_id}")
        logger.warning("%s: %s", record.path, text)
        store.note(record.id, text)


def join_holder(store: Store, record: FileRecord, holder: FileRecord) -> str | None:
    """Point ``record`` at the task of ``holder`` (same content, same index).

    Returns the state ``record`` moved to (indexing or finalizing), or None
    when the holder has no task yet and the caller should wait for it.
    """
    if holder.task_id is None or holder.state not in (State.INDEXING, State.FINALIZING,
                                                      State.DONE):
        return None
    where = f"already indexed as video {holder.video_id}" if holder.state != State.INDEXING \
        else "being indexed"
    detail = (f"duplicate: same content as {holder.path} ({where}, task {holder.task_id}); "
              "not uploaded again")
    common: Changes = {"task_id": holder.task_id, "video_id": holder.video_id,
                       "duplicate_of": holder.id, "uploaded_at": holder.uploaded_at,
                       # the poller follows the holder's job by the same path
                       "upload_method": holder.upload_method, "asset_id": holder.asset_id,
                       "indexed_asset_id": holder.indexed_asset_id}
    if holder.state == State.INDEXING:
        store.transition(record.id, State.INDEXING, detail, **common)
        return State.INDEXING
    finished: Changes = {**common, "outcome": "ready", "reason": detail,
                         "task_json": holder.task_json, "remote_status": holder.remote_status}
    store.transition(record.id, State.FINALIZING, detail, **finished)
    return State.FINALIZING
