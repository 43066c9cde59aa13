"""Never pay for one upload twice.

Two questions are asked before any upload:

* Did an earlier attempt of ours already create the task? ``POST /tasks``
  has no idempotency key, so a timeout or a reset may hide a task that
  exists. ``GET /tasks`` (by index, filename and creation time) finds
  candidates; the videos list, which carries the ``user_metadata`` we sent,
  confirms the content when the time window alone cannot.
* Is this content (sha256) already indexed, or being indexed, in this
  index? Then the file joins that task instead of sending the bytes again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from .api import TwelveLabsClient
from .states import State
from .store import FileRecord, Store

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

# How far before our attempt's start a remote task may claim to be created
# and still be ours (clock skew between this host and the API).
ADOPT_SKEW = timedelta(minutes=2)


def find_earlier_task(api: TwelveLabsClient, record: FileRecord) -> dict[str, Any] | None:
    """The task an earlier attempt for ``record`` created, if any.

    ``upload_started_at == 0`` means "an upload may have happened at an
    unknown time" (the database was rebuilt); then only a content match counts.
    """
    unbounded = not record.upload_started_at
    since = None
    if not unbounded:
        started = datetime.fromtimestamp(record.upload_started_at or 0, timezone.utc)
        since = (started - ADOPT_SKEW).strftime("%Y-%m-%dT%H:%M:%SZ")
    duration = (record.media_facts() or {}).get("duration_seconds")
    tasks = [t for t in api.list_tasks(index_id=record.index_id, filename=record.name,
                                       created_at=since)
             if could_be_ours(t, record.name, duration)]
    if not tasks:
        return None
    if unbounded or len(tasks) > 1:
        return _confirmed_by_content(api, record, tasks) or (None if unbounded else
                                                            _earliest(tasks))
    return tasks[0]


def could_be_ours(task: dict[str, Any], filename: str, duration: float | None) -> bool:
    """The list filter already matched index and name; rule out what we can."""
    meta = task.get("system_metadata") or task.get("metadata") or {}
    if meta.get("filename") not in (None, filename):
        return False
    remote = meta.get("duration")
    return remote is None or duration is None or abs(float(remote) - duration) <= 1.0


def _confirmed_by_content(api: TwelveLabsClient, record: FileRecord,
                          tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    videos = api.list_videos(index_id=record.index_id, filename=record.name)
    ours = {v.get("_id") for v in videos
            if (v.get("user_metadata") or {}).get("sha256") == record.sha256}
    matching = [t for t in tasks if t.get("video_id") in ours]
    return _earliest(matching) if matching else None


def _earliest(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return min(tasks, key=lambda t: t.get("created_at") or "")


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
    common = {"task_id": holder.task_id, "video_id": holder.video_id,
              "duplicate_of": holder.id, "uploaded_at": holder.uploaded_at}
    if holder.state == State.INDEXING:
        store.transition(record.id, State.INDEXING, detail, **common)
        return State.INDEXING
    store.transition(record.id, State.FINALIZING, detail, outcome="ready", reason=detail,
                     task_json=holder.task_json, remote_status=holder.remote_status, **common)
    return State.FINALIZING
