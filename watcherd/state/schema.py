"""The shape of the state database: schema, columns and the row dataclass."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypedDict

from watcherd.names import api_filename

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    folder TEXT NOT NULL,
    index_id TEXT NOT NULL,
    state TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    task_id TEXT,
    video_id TEXT,
    remote_status TEXT,
    outcome TEXT,
    reason TEXT,
    error_code TEXT,
    rule TEXT,
    dest_path TEXT,
    facts TEXT,
    task_json TEXT,
    discovered_at REAL NOT NULL,
    settled_at REAL,
    upload_started_at REAL,
    uploaded_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL,
    duplicate_of INTEGER,
    task_may_exist INTEGER NOT NULL DEFAULT 0,
    indexing_seconds REAL,
    upload_method TEXT,
    upload_id TEXT,
    chunk_size INTEGER,
    total_chunks INTEGER,
    session_expires_at REAL,
    asset_id TEXT,
    indexed_asset_id TEXT,
    metadata_json TEXT
);
-- At most one live row per path; finished rows stay as history.
CREATE UNIQUE INDEX IF NOT EXISTS files_active_path ON files(path)
    WHERE state NOT IN ('done', 'failed', 'vanished');
CREATE INDEX IF NOT EXISTS files_state ON files(state);
CREATE INDEX IF NOT EXISTS files_sha ON files(sha256, index_id);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    at REAL NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS history_file ON history(file_id);
-- "Most recent done/failed" and "queue position" stay fast at 100,000 rows.
CREATE INDEX IF NOT EXISTS files_state_updated ON files(state, updated_at);
CREATE INDEX IF NOT EXISTS files_path ON files(path);
CREATE INDEX IF NOT EXISTS files_task ON files(task_id);
-- What the running daemon knows and the database does not (observer health,
-- upload progress, pauses): one row, rewritten every few seconds, for the CLI.
CREATE TABLE IF NOT EXISTS runtime (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    snapshot TEXT NOT NULL,
    updated_at REAL NOT NULL
);
-- Each index's models as Twelve Labs last named them (a JSON list): a start
-- without network still validates with the index's profile.
CREATE TABLE IF NOT EXISTS index_models (
    index_id TEXT PRIMARY KEY,
    models TEXT NOT NULL,
    checked_at REAL NOT NULL
);
-- The multipart path (``state.chunks``): what each session was made for (the file's
-- sha256 and size, and the headers its chunk PUTs must carry), so a resume after a
-- crash can tell it still fits the file; and each chunk's ETag, stored the moment its
-- PUT answers, so a resume re-reports it instead of sending the chunk again.
CREATE TABLE IF NOT EXISTS upload_sessions (
    upload_id TEXT PRIMARY KEY,
    file_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    upload_headers TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_sessions_file ON upload_sessions(file_id);
CREATE TABLE IF NOT EXISTS chunks (
    upload_id TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    etag TEXT NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (upload_id, chunk_index)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_file ON chunks(file_id);
"""

# How many rows each folder has in each state, kept by triggers in the same
# transaction as every write, so the status line and ``watcherd status`` read
# a handful of rows instead of counting the whole (growing) history.
COUNTERS = (
    """CREATE TABLE IF NOT EXISTS state_counts (
        folder TEXT NOT NULL,
        state TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (folder, state)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS count_insert AFTER INSERT ON files BEGIN
        INSERT INTO state_counts (folder, state, n) VALUES (new.folder, new.state, 1)
            ON CONFLICT (folder, state) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER IF NOT EXISTS count_delete AFTER DELETE ON files BEGIN
        UPDATE state_counts SET n = n - 1 WHERE folder = old.folder AND state = old.state;
    END""",
    """CREATE TRIGGER IF NOT EXISTS count_update AFTER UPDATE OF state, folder ON files
        WHEN old.state IS NOT new.state OR old.folder IS NOT new.folder BEGIN
        UPDATE state_counts SET n = n - 1 WHERE folder = old.folder AND state = old.state;
        INSERT INTO state_counts (folder, state, n) VALUES (new.folder, new.state, 1)
            ON CONFLICT (folder, state) DO UPDATE SET n = n + 1;
    END""",
)
# Run once, when the counters are added to a database that has rows already.
FILL_COUNTERS = ("INSERT INTO state_counts (folder, state, n) "
                 "SELECT folder, state, COUNT(*) FROM files GROUP BY folder, state")
# Small facts about the database itself (e.g. how far retention has pruned).
META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"

COLUMNS = (
    "id path folder index_id state size mtime_ns sha256 attempts task_id video_id remote_status "
    "outcome reason error_code rule dest_path facts task_json discovered_at settled_at "
    "upload_started_at uploaded_at finished_at updated_at duplicate_of task_may_exist "
    "indexing_seconds upload_method upload_id chunk_size total_chunks session_expires_at asset_id "
    "indexed_asset_id metadata_json"
).split()
# Columns added after the first release: ALTERed into older databases on open.
#   task_may_exist: 1 while an upload attempt may have created a task we never
#     heard of (set at upload intent, cleared by a definitive answer), so the
#     next attempt looks for it first, even after a crash or a restart.
#   indexing_seconds: how long the task has been followed, counted on the
#     monotonic clock while the daemon runs (wall-clock steps do not count).
#   upload_method: the path this row's upload took ("tasks" or "multipart"),
#     written at upload intent; NULL before the first attempt.
#   upload_id, chunk_size, total_chunks, session_expires_at: the multipart
#     session, stored in the transaction that receives its answer (resume).
#   asset_id, indexed_asset_id: the multipart path's remote ids; on that path
#     task_id holds the indexed asset's id (the job that is polled).
#   metadata_json: the user_metadata gathered for this version of the file
#     beyond watcherd's own keys, {"values": {...}, "origins": {key: source}},
#     written before validation; NULL until then (cleared when it settles again).
ADDED_COLUMNS = {"duplicate_of": "INTEGER",
                 "task_may_exist": "INTEGER NOT NULL DEFAULT 0",
                 "indexing_seconds": "REAL",
                 "upload_method": "TEXT",
                 "upload_id": "TEXT",
                 "chunk_size": "INTEGER",
                 "total_chunks": "INTEGER",
                 "session_expires_at": "REAL",
                 "asset_id": "TEXT",
                 "indexed_asset_id": "TEXT",
                 "metadata_json": "TEXT"}
# Run once, right after the column is added to an older database.
BACKFILL = {
    # Before this column existed, every attempt without a recorded task may
    # have created one: look before sending again.
    "task_may_exist": "UPDATE files SET task_may_exist = 1 WHERE upload_started_at IS NOT NULL "
                      "AND task_id IS NULL AND state IN ('settling', 'queued', 'validating', "
                      "'uploading')",
}
# index_id changes at upload intent: the index the task is created in.
UPDATABLE = set(COLUMNS) - {"id", "path", "folder", "state", "updated_at"}


@dataclass(frozen=True)
class FileRecord:
    id: int
    path: str
    folder: str
    index_id: str
    state: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    attempts: int
    task_id: str | None
    video_id: str | None
    remote_status: str | None
    outcome: str | None
    reason: str | None
    error_code: str | None
    rule: str | None
    dest_path: str | None
    facts: str | None
    task_json: str | None
    discovered_at: float
    settled_at: float | None
    upload_started_at: float | None
    uploaded_at: float | None
    finished_at: float | None
    updated_at: float
    duplicate_of: int | None = None
    task_may_exist: int = 0
    indexing_seconds: float | None = None
    upload_method: str | None = None
    upload_id: str | None = None
    chunk_size: int | None = None
    total_chunks: int | None = None
    session_expires_at: float | None = None
    asset_id: str | None = None
    indexed_asset_id: str | None = None
    metadata_json: str | None = None

    @property
    def name(self) -> str:
        """The file name as Twelve Labs knows it (valid UTF-8, ``names.api_filename``)."""
        return api_filename(self.path)

    def task(self) -> dict | None:
        return json.loads(self.task_json) if self.task_json else None

    def media_facts(self) -> dict | None:
        return json.loads(self.facts) if self.facts else None

    def gathered_metadata(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The user_metadata gathered beyond watcherd's own keys, and where each came from."""
        found = json.loads(self.metadata_json) if self.metadata_json else {}
        return found.get("values", {}), found.get("origins", {})


class Fields(TypedDict, total=False):
    """Columns a write may set besides the row's identity and state (checked by mypy).

    ``facts`` and ``task_json`` take the decoded JSON (stored as its text) or
    the text itself. ``Store`` refuses any other key at run time too (``UPDATABLE``).
    """
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    attempts: int
    task_id: str | None
    video_id: str | None
    remote_status: str | None
    outcome: str | None
    reason: str | None
    error_code: str | None
    rule: str | None
    dest_path: str | None
    facts: dict[str, Any] | str | None
    task_json: dict[str, Any] | str | None
    discovered_at: float
    settled_at: float | None
    upload_started_at: float | None
    uploaded_at: float | None
    finished_at: float | None
    duplicate_of: int | None
    task_may_exist: int
    indexing_seconds: float | None
    upload_method: str | None
    upload_id: str | None
    chunk_size: int | None
    total_chunks: int | None
    session_expires_at: float | None
    asset_id: str | None
    indexed_asset_id: str | None
    metadata_json: dict[str, Any] | str | None


class Changes(Fields, total=False):
    """What a transition or update may change: ``Fields``, and the index at upload intent."""
    index_id: str
