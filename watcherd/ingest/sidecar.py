"""The sidecar: ``<moved name>.json`` beside each file in done/ or failed/.

It tells people and scripts what happened to the file, and it is what a
rebuild of a damaged database reads back (``service.rebuild``). Its shape is
defined once here, with the one way to write it and the one way to read it.
Keys are written sorted with two-space indentation and non-ASCII kept as is;
scripts read these fields, so they only ever get added, never renamed.

``upload_method`` says which path the bytes took: "tasks" (``POST /tasks``;
``asset_id`` and ``indexed_asset_id`` are null), "multipart" (an asset, then
an indexed asset: ``task_id`` is the indexed asset's id, the job that was
followed, and ``video_id`` the id the index knows the video by), or null when
the file never reached the API (refused before upload).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

from watcherd import __version__
from watcherd.config import FolderConfig
from watcherd.ingest.mover import write_atomically
from watcherd.ingest.usermetadata import user_metadata_for, user_metadata_sources
from watcherd.names import SIDECAR_SUFFIX, display
from watcherd.state.schema import FileRecord

TIMESTAMPS = ("discovered_at", "settled_at", "upload_started_at", "uploaded_at", "finished_at")


class DuplicateOf(TypedDict):
    """The earlier file with the same content whose task this one shares."""
    source_path: str
    moved_to: str | None
    task_id: str | None
    video_id: str | None


class Timestamps(TypedDict):
    """ISO 8601 in UTC with milliseconds, or None when that step never happened."""
    discovered_at: str | None
    settled_at: str | None
    upload_started_at: str | None
    uploaded_at: str | None
    finished_at: str | None


class Sidecar(TypedDict):
    status: Literal["ready", "failed"]
    reason: str | None
    error_code: str | None
    rule: str | None
    task_id: str | None
    video_id: str | None
    upload_method: str | None
    asset_id: str | None
    indexed_asset_id: str | None
    index_id: str
    model: str | None
    source_path: str
    original_name: str
    moved_to: str | None
    size: int | None
    sha256: str | None
    attempts: int
    duplicate_of: DuplicateOf | None
    media: dict[str, Any] | None
    task: dict[str, Any] | None
    timestamps: Timestamps
    watcherd_version: str
    # Added with folders[].after and metadata files (older sidecars read them as None):
    after: str | None  # move, leave or delete: what became of the source
    mtime_ns: int | None  # with path, size and sha256: the version (after: leave)
    user_metadata: dict[str, Any] | None  # as sent; None when this file was never sent
    user_metadata_sources: dict[str, str] | None  # key -> folder, path, file or watcherd
    metadata_file: str | None  # where the metadata file that came with it is now


def sidecar_document(record: FileRecord, folder: FolderConfig | None, finished: float,
                     original: FileRecord | None = None, *,
                     metadata_file: Path | None = None) -> Sidecar:
    """What happened to the file, for people and scripts reading done/ or failed/.

    ``original`` is the earlier file with the same content whose task this
    one shares (``dedupe``); its bytes were not uploaded again. Paths are
    shown with undecodable bytes escaped (``names.display``); ``original_name``
    is the name the file had in the inbox, which differs from the moved name
    when that was taken or too long. ``user_metadata`` is the object sent
    with the upload or the indexing call (None when neither was attempted:
    rejected before it, or a duplicate sharing another file's task).
    """
    # A row indexed from an asset uploaded for another index (``reuse``) made its
    # own indexing call, which carried the metadata, without an upload attempt.
    sent = record.attempts > 0 or (record.indexed_asset_id is not None
                                   and record.duplicate_of is None)
    return {
        "status": "ready" if record.outcome == "ready" else "failed",
        "reason": record.reason,
        "error_code": record.error_code,
        "rule": record.rule,
        "task_id": record.task_id,
        "video_id": record.video_id,
        "upload_method": upload_method_of(record),
        "asset_id": record.asset_id,
        "indexed_asset_id": record.indexed_asset_id,
        "index_id": record.index_id,
        "model": folder.profile.name if folder else None,
        "source_path": display(record.path),
        "original_name": display(Path(record.path).name),
        "moved_to": _shown_path(record.dest_path),
        "size": record.size,
        "sha256": record.sha256,
        "attempts": record.attempts,
        "duplicate_of": None if original is None else {
            "source_path": display(original.path),
            "moved_to": _shown_path(original.dest_path),
            "task_id": original.task_id, "video_id": original.video_id},
        "media": record.media_facts(),
        "task": record.task(),
        "timestamps": _timestamps(record, finished),
        "watcherd_version": __version__,
        "after": folder.after if folder else "move",
        "mtime_ns": record.mtime_ns,
        "user_metadata": user_metadata_for(record) if sent else None,
        "user_metadata_sources": user_metadata_sources(record) if sent else None,
        "metadata_file": _shown_path(None if metadata_file is None else str(metadata_file)),
    }


def to_json(document: Sidecar) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def from_json(text: str) -> Sidecar | None:
    """The sidecar in ``text``, or None if it is JSON but not a sidecar (no ``source_path``).

    A key missing from an older version's sidecar reads as None (``attempts``
    as 0). Raises ValueError when ``text`` is not JSON or a value is unusable.
    """
    document = json.loads(text)
    if not isinstance(document, dict) or not document.get("source_path"):
        return None
    found = {key: document.get(key) for key in Sidecar.__required_keys__}
    try:
        found["attempts"] = int(document.get("attempts") or 0)
    except TypeError as exc:
        raise ValueError(f"attempts: not a number: {document.get('attempts')!r}") from exc
    return cast(Sidecar, found)


def sidecar_path(moved: Path) -> Path:
    return moved.with_name(moved.name + SIDECAR_SUFFIX)


def write_sidecar(moved: Path, document: Sidecar) -> Path:
    """Write ``<moved name>.json`` atomically (temp file, fsync, rename); returns its path."""
    return write_atomically(sidecar_path(moved), to_json(document))


def read_sidecar(path: Path) -> Sidecar | None:
    """The sidecar at ``path`` (see ``from_json``); OSError or ValueError if unreadable."""
    return from_json(path.read_text(encoding="utf-8"))


def upload_method_of(record: FileRecord) -> str | None:
    """The path the file's bytes took, as the sidecar and the operator commands say it."""
    # Rows from before the column, and today's /tasks rows, have a task but no method.
    return record.upload_method or ("tasks" if record.task_id else None)


def _timestamps(record: FileRecord, finished: float) -> Timestamps:
    times = {name: getattr(record, name) for name in TIMESTAMPS}
    times["finished_at"] = finished
    return cast(Timestamps, {name: _iso(ts) for name, ts in times.items()})


def _shown_path(path: str | None) -> str | None:
    return None if path is None else display(path)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
