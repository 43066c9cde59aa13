"""SQLite tracker: one row per file, with every state transition recorded.

Discipline from dependency-trials.md section 6: WAL, one connection per
thread, autocommit with explicit ``BEGIN IMMEDIATE`` for read-modify-write
(a DEFERRED transaction that upgrades to a write fails at once with
"database is locked", busy timeout or not).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .states import ACTIVE_STATES, State

logger = logging.getLogger(__name__)

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
    updated_at REAL NOT NULL
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
"""

COLUMNS = (
    "id path folder index_id state size mtime_ns sha256 attempts task_id video_id remote_status "
    "outcome reason error_code rule dest_path facts task_json discovered_at settled_at "
    "upload_started_at uploaded_at finished_at updated_at"
).split()
UPDATABLE = set(COLUMNS) - {"id", "path", "folder", "index_id", "state", "updated_at"}


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

    @property
    def name(self) -> str:
        return Path(self.path).name

    def task(self) -> dict | None:
        return json.loads(self.task_json) if self.task_json else None

    def media_facts(self) -> dict | None:
        return json.loads(self.facts) if self.facts else None


class Store:
    """Thread-safe facade: each thread lazily gets its own connection."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time,
                 readonly: bool = False) -> None:
        self.path = Path(path)
        self.clock = clock
        self.readonly = readonly
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def open(self) -> Store:
        """Create the database and schema (not in read-only mode)."""
        if not self.readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn().executescript(SCHEMA)
        return self

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            uri = f"file:{self.path}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.row_factory = sqlite3.Row
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- reads ---------------------------------------------------------------

    def get(self, file_id: int) -> FileRecord:
        row = self._conn().execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise KeyError(file_id)
        return _record(row)

    def active_by_path(self, path: str) -> FileRecord | None:
        placeholders = ",".join("?" * len(ACTIVE_STATES))
        row = self._conn().execute(
            f"SELECT * FROM files WHERE path = ? AND state IN ({placeholders})",
            (path, *ACTIVE_STATES),
        ).fetchone()
        return _record(row) if row else None

    def in_states(self, *states: str) -> list[FileRecord]:
        placeholders = ",".join("?" * len(states))
        rows = self._conn().execute(
            f"SELECT * FROM files WHERE state IN ({placeholders}) ORDER BY id", states
        ).fetchall()
        return [_record(r) for r in rows]

    def all(self, limit: int | None = None) -> list[FileRecord]:
        sql = "SELECT * FROM files ORDER BY id DESC" + (" LIMIT ?" if limit else "")
        rows = self._conn().execute(sql, (limit,) if limit else ()).fetchall()
        return [_record(r) for r in rows]

    def history(self, file_id: int) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT at, from_state, to_state, detail FROM history WHERE file_id = ? ORDER BY id",
            (file_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self._conn().execute("SELECT state, COUNT(*) FROM files GROUP BY state")
        return {state: n for state, n in rows}

    # -- writes --------------------------------------------------------------

    def add(self, *, path: str, folder: str, index_id: str, state: str = State.SETTLING,
            detail: str | None = None, **fields: Any) -> FileRecord:
        """Insert a live row for ``path`` (which must not have one already)."""
        now = self.clock()
        cols = {"path": path, "folder": folder, "index_id": index_id, "state": state,
                "discovered_at": now, "updated_at": now, **_checked(fields)}
        with self._write() as conn:
            cur = conn.execute(
                f"INSERT INTO files ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                tuple(cols.values()),
            )
            conn.execute(
                "INSERT INTO history (file_id, at, from_state, to_state, detail) "
                "VALUES (?, ?, NULL, ?, ?)", (cur.lastrowid, now, state, detail),
            )
        return self.get(cur.lastrowid)

    def transition(self, file_id: int, state: str, detail: str | None = None,
                   *, expect: tuple[str, ...] | None = None, **fields: Any) -> FileRecord:
        """Move a row to ``state`` and record why; one INFO log line per change.

        ``expect`` guards against racing writers: the change only happens if
        the row is currently in one of those states (else StaleState).
        """
        now = self.clock()
        updates = {**_checked(fields), "state": state, "updated_at": now}
        with self._write() as conn:
            row = conn.execute("SELECT state FROM files WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                raise KeyError(file_id)
            old = row["state"]
            if expect is not None and old not in expect:
                raise StaleState(f"file {file_id} is {old}, expected one of {expect}")
            assignments = ", ".join(f"{k} = ?" for k in updates)
            conn.execute(f"UPDATE files SET {assignments} WHERE id = ?",
                         (*updates.values(), file_id))
            if old != state or detail:
                conn.execute(
                    "INSERT INTO history (file_id, at, from_state, to_state, detail) "
                    "VALUES (?, ?, ?, ?, ?)", (file_id, now, old, state, detail),
                )
        record = self.get(file_id)
        if old != state:
            _log_transition(record, old, detail)
        return record

    def update(self, file_id: int, **fields: Any) -> None:
        """Change columns without a state change (e.g. the remote status)."""
        updates = {**_checked(fields), "updated_at": self.clock()}
        assignments = ", ".join(f"{k} = ?" for k in updates)
        with self._write() as conn:
            conn.execute(f"UPDATE files SET {assignments} WHERE id = ?",
                         (*updates.values(), file_id))


class StaleState(Exception):
    """The row was not in the state the caller expected."""


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"unknown columns: {sorted(unknown)}")
    return {k: json.dumps(v) if k in ("facts", "task_json") and v is not None
            and not isinstance(v, str) else v for k, v in fields.items()}


def _record(row: sqlite3.Row) -> FileRecord:
    return FileRecord(**{k: row[k] for k in COLUMNS})


def _log_transition(record: FileRecord, old: str, detail: str | None) -> None:
    task = f" task={record.task_id}" if record.task_id else ""
    why = f": {detail}" if detail else ""
    logger.info("%s: %s -> %s%s%s", record.path, old, record.state, task, why)
