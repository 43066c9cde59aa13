"""Read-only questions the operator commands ask of the state database.

Each is one indexed query, so ``status`` and ``explain`` answer in well under
a second at 100,000 rows (``bench/status_rows.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from watcherd.state.chunks import ChunkLedger
from watcherd.state.codec import record_from_row
from watcherd.state.schema import FileRecord
from watcherd.state.states import CLAIMED_ELSEWHERE, PRE_UPLOAD_STATES, UNREADABLE, State
from watcherd.state.store import ASSET_IN_FLIGHT_SQL, READY_ASSET_SQL, Store


def records_for_path(store: Store, path: str) -> list[FileRecord]:
    """Every row for ``path``, oldest first (a retried file has several)."""
    return _records(store, "SELECT * FROM files WHERE path = ? ORDER BY id", (path,))


def records_at(store: Store, path: str) -> list[FileRecord]:
    """Rows whose file now lives at ``path`` (moved to done/ or failed/)."""
    return _records(store, "SELECT * FROM files WHERE dest_path = ? ORDER BY id", (path,))


def records_for_task(store: Store, task_id: str) -> list[FileRecord]:
    return _records(store, "SELECT * FROM files WHERE task_id = ? ORDER BY id", (task_id,))


def recent(store: Store, state: str, limit: int, folder: str | None = None) -> list[FileRecord]:
    sql = "SELECT * FROM files WHERE state = ?" + (" AND folder = ?" if folder else "")
    return _records(store, sql + " ORDER BY updated_at DESC LIMIT ?",
                    (state, folder, limit) if folder else (state, limit))


def active(store: Store, limit: int = 50) -> list[FileRecord]:
    """Files being validated, uploaded or indexed right now."""
    return _records(store, "SELECT * FROM files WHERE state IN (?, ?, ?) ORDER BY id LIMIT ?",
                    (State.VALIDATING, State.UPLOADING, State.INDEXING, limit))


def listed(store: Store, state: str | None = None, folder: str | None = None, *,
           since: float | None = None, limit: int | None = None) -> Iterator[FileRecord]:
    """Every row (``watcherd list``), in ``state`` and ``folder`` and changed at or after
    ``since`` if given, newest first, at most ``limit``: streamed, one row at a time."""
    sql = "SELECT * FROM files"
    clauses: list[str] = []
    params: list[object] = []
    for clause, value in (("state = ?", state), ("folder = ?", folder),
                          ("updated_at >= ?", since)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return (record_from_row(row) for row in store._stream(sql, tuple(params)))


def queue_position(store: Store, record: FileRecord) -> int:
    """1 for the next file to upload: queued files go roughly in the order they settled."""
    row = store._select("SELECT COUNT(*) FROM files WHERE state = ? AND id < ?",
                      (State.QUEUED, record.id))
    return row[0][0] + 1


def counts_by_folder(store: Store) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for folder, state, n in store.counts_by_folder():
        counts.setdefault(folder, {})[state] = n
    return counts


def unreadable(store: Store, folder: str, limit: int = 50) -> list[FileRecord]:
    """Files waiting in ``folder`` because the service user cannot read them."""
    return _records(store, "SELECT * FROM files WHERE state = ? AND error_code = ? AND "
                    "folder = ? ORDER BY id LIMIT ?",
                    (State.SETTLING, UNREADABLE, folder, limit))


def claimed_elsewhere(store: Store, folder: str) -> int:
    """Files in ``folder`` another host has claimed (several hosts): seen here, not ours."""
    rows = store._select("SELECT COUNT(*) FROM files WHERE state = ? AND error_code = ? AND "
                         "folder = ?", (State.SETTLING, CLAIMED_ELSEWHERE, folder))
    return int(rows[0][0])


def ready_asset(store: Store, record: FileRecord) -> FileRecord | None:
    """A row of another index whose asset of this content was ready and indexed: this
    file can be indexed from that asset, without uploading it again."""
    found = _records(store, READY_ASSET_SQL, _content(record))
    return found[0] if found else None


def asset_in_flight(store: Store, record: FileRecord) -> FileRecord | None:
    """A row of another index uploading this content as an asset right now."""
    found = _records(store, ASSET_IN_FLIGHT_SQL, _content(record))
    return found[0] if found else None


def _content(record: FileRecord) -> dict[str, object]:
    return {"sha": record.sha256, "index": record.index_id, "id": record.id}


def upload_session(store: Store, record: FileRecord,
                   live: list[int] | None = None) -> dict[str, Any] | None:
    """A multipart upload's session while it is under way: chunks sent (``live``, the
    running daemon's count, else the ledger's) of how many, and when it expires."""
    if record.upload_id is None or record.total_chunks is None or \
            record.state not in (*PRE_UPLOAD_STATES, State.UPLOADING):
        return None  # none, or complete: the asset is what counts from then on
    done = live[0] if live else ChunkLedger(store).counts(record.upload_id)[0]
    return {"upload_id": record.upload_id, "chunks_done": done,
            "chunks_total": record.total_chunks, "expires_at": record.session_expires_at}


def _records(store: Store, sql: str, params: tuple | dict) -> list[FileRecord]:
    return [record_from_row(row) for row in store._select(sql, params)]
