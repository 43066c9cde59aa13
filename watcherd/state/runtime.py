"""The runtime snapshot: what the running daemon knows and the database does not.

Observer modes and health, upload progress, whether uploads are paused or
backing off. The daemon builds it (``service.runtime``), the store keeps it
as one JSON row in the ``runtime`` table, and ``watcherd status`` and
``explain`` read it back. Its shape is defined once, here.
"""

from __future__ import annotations

import json
from typing import Literal, TypedDict, cast


class FolderWatch(TypedDict):
    """How one configured folder is watched."""
    path: str
    mode: str               # "inotify" or "polling"
    healthy: bool
    problem: str | None
    last_scan: float | None  # wall clock of the last full scan


class UploadProgress(TypedDict):
    """One upload in flight."""
    file_id: int
    path: str
    sent: int
    total: int
    rate: float | None      # bytes per second
    chunks: list[int] | None  # [done, in all] on the multipart path; absent before it


class GateSnapshot(TypedDict):
    """Whether uploads may go: running, paused (why, how to fix) or backing off until when."""
    state: Literal["running", "paused", "backing_off"]
    reason: str | None
    kind: str | None        # the pausing error's type, e.g. "AuthError"
    fix: str | None
    until: float | None     # wall clock when a backoff ends


class UploadPathsSnapshot(TypedDict):
    """What the account said about the upload paths (``ingest.method``)."""
    multipart_refused: str | None  # why, since a 403 on session create
    tasks_removed: str | None       # why, since POST /tasks answered 404/410
    fallback: bool                  # auto uploads through POST /tasks meanwhile
    waiting: int                    # files parked until a path opens


class RuntimeSnapshot(TypedDict):
    pid: int
    version: str
    started_at: float
    folders: list[FolderWatch]
    uploads: list[UploadProgress]
    gate: GateSnapshot | None
    paused_indexes: dict[str, str]  # index id → why it is paused (the index is gone)
    upload_paths: UploadPathsSnapshot | None
    problems: list[str]


class LiveDaemon(RuntimeSnapshot):
    """A snapshot fresh enough to say the daemon runs, and when it was written."""
    seen_at: float


def snapshot_to_json(snapshot: RuntimeSnapshot) -> str:
    return json.dumps(snapshot)


def snapshot_from_json(text: str) -> RuntimeSnapshot:
    """The snapshot in ``text``; a list or mapping a writer left out reads as empty."""
    found = json.loads(text)
    empty: dict[str, object] = {"folders": [], "uploads": [], "gate": None,
                                "paused_indexes": {}, "problems": [], "upload_paths": None}
    return cast(RuntimeSnapshot, {**empty, **found})
