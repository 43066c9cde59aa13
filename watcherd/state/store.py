"""SQLite tracker: one row per file, with every state transition recorded.

Discipline from dependency-trials.md section 6: WAL, one connection per
thread, autocommit with explicit ``BEGIN IMMEDIATE`` for read-modify-write
(a DEFERRED transaction that upgrades to a write fails at once with
"database is locked", busy timeout or not).

Paths are stored exactly: a name that is UTF-8 as TEXT, one with other bytes
as a BLOB of those bytes (``os.fsencode``), so every name round-trips and
``WHERE path = ?`` matches either way. Free text (history details, reasons)
is stored escaped for display (``names.display``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Unpack

from watcherd.names import display
from watcherd.state import outbox
from watcherd.state.codec import checked_fields, db_path, db_text, path_from_db, record_from_row
from watcherd.state.prune import prune_done, prune_files
from watcherd.state.runtime import RuntimeSnapshot, snapshot_from_json, snapshot_to_json
from watcherd.state.schema import (
    META,
    SCHEMA,
    Changes,
    Fields,
    FileRecord,
)
from watcherd.state.states import ACTIVE_STATES, State
from watcherd.state.upgrade import (
    add_counters,
    add_missing_columns,
    check_unless_closed_cleanly,
    is_corruption,
)
from watcherd.telemetry import NO_TELEMETRY, Telemetry

logger = logging.getLogger(__name__)


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
        self.telemetry: Telemetry = NO_TELEMETRY  # told every state change (the daemon's metrics)

    def open(self) -> Store:
        """Create or upgrade the schema; raise CorruptDatabase if SQLite says it is damaged."""
        if self.readonly:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = self._conn()
            conn.executescript(SCHEMA + META + outbox.SCHEMA)
            add_missing_columns(conn)
            add_counters(conn)
            verdict = check_unless_closed_cleanly(conn)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self.close()
            raise CorruptDatabase(self.path, str(exc)) from exc
        if verdict != "ok":
            self.close()
            raise CorruptDatabase(self.path, f"integrity check: {verdict}")
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
            # Only takes effect on a new, empty database: freed pages are then
            # returned to the file system by ``vacuum_some`` after retention.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.row_factory = sqlite3.Row
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        if getattr(self._local, "batch", False):
            # Inside batch(): each write stays atomic on its own, one commit for all.
            conn.execute("SAVEPOINT write")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO write")
                conn.execute("RELEASE write")
                raise
            conn.execute("RELEASE write")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """This thread's writes in the block share one transaction (a commit costs more
        than the inserts of a new file). Keep it short: it holds the write lock."""
        if getattr(self._local, "batch", False):
            yield
            return
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        self._local.batch = True
        try:
            yield
        finally:
            self._local.batch = False
            # Also when the block failed: every write that completed stands, as it
            # would have with a commit of its own (a failed one was rolled back).
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise

    # -- reads ---------------------------------------------------------------

    def get(self, file_id: int) -> FileRecord:
        row = self._conn().execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise KeyError(file_id)
        return record_from_row(row)

    def active_by_path(self, path: str) -> FileRecord | None:
        placeholders = ",".join("?" * len(ACTIVE_STATES))
        row = self._conn().execute(
            f"SELECT * FROM files WHERE path = ? AND state IN ({placeholders})",
            (db_path(path), *ACTIVE_STATES),
        ).fetchone()
        return record_from_row(row) if row else None

    def last_finished(self, path: str) -> FileRecord | None:
        """The newest done or failed row of ``path`` (``after: leave`` remembers by it)."""
        row = self._conn().execute(
            "SELECT * FROM files WHERE path = ? AND state IN (?, ?) ORDER BY id DESC LIMIT 1",
            (db_path(path), State.DONE, State.FAILED)).fetchone()
        return record_from_row(row) if row else None

    def paths_in_pipeline(self) -> set[str]:
        """Paths of live rows past settling, in one query (the settler's rescan view)."""
        states = [s for s in ACTIVE_STATES if s != State.SETTLING]
        rows = self._conn().execute(
            f"SELECT path FROM files WHERE state IN ({','.join('?' * len(states))})", states)
        return {path_from_db(path) for (path,) in rows}

    def in_states(self, *states: str) -> list[FileRecord]:
        placeholders = ",".join("?" * len(states))
        rows = self._conn().execute(
            f"SELECT * FROM files WHERE state IN ({placeholders}) ORDER BY id", states
        ).fetchall()
        return [record_from_row(r) for r in rows]

    def all(self, limit: int | None = None) -> list[FileRecord]:
        sql = "SELECT * FROM files ORDER BY id DESC" + (" LIMIT ?" if limit else "")
        rows = self._conn().execute(sql, (limit,) if limit else ()).fetchall()
        return [record_from_row(r) for r in rows]

    def history(self, file_id: int) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT at, from_state, to_state, detail FROM history WHERE file_id = ? ORDER BY id",
            (file_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    def content_holder(self, record: FileRecord) -> FileRecord | None:
        """Another row that has (or may soon have) a task for the same content and index."""
        return _content_holder(self._conn(), record.id, record.sha256, record.index_id)

    def holder_for_new(self, sha256: str, index_id: str) -> FileRecord | None:
        """The row a file not tracked yet would join or wait for (``scan --dry-run``):
        ``content_holder`` for a row newer than every row there is, as its would be."""
        return _content_holder(self._conn(), NEWEST_ID, sha256, index_id)

    def _select(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        """Read-only SQL for ``state.queries`` only: no SQL is written outside ``state/``."""
        if isinstance(params, dict):
            return self._conn().execute(sql, {k: db_path(v) for k, v in params.items()}
                                        ).fetchall()
        return self._conn().execute(sql, tuple(db_path(v) for v in params)).fetchall()

    def runtime(self) -> tuple[RuntimeSnapshot, float] | None:
        """The daemon's last published snapshot and when (wall clock), if any."""
        try:
            row = self._conn().execute("SELECT snapshot, updated_at FROM runtime").fetchone()
        except sqlite3.OperationalError:  # a database from before the runtime table
            return None
        return (snapshot_from_json(row[0]), row[1]) if row else None

    def _stream(self, sql: str, params: tuple = ()) -> Iterator[sqlite3.Row]:
        """Like ``_select``, one row at a time through the cursor (constant memory)."""
        yield from self._conn().execute(sql, tuple(db_path(v) for v in params))

    def counts(self) -> dict[str, int]:
        """Rows per state, from the counters: a few rows to read, however long the history."""
        counts: dict[str, int] = {}
        for _folder, state, n in self.counts_by_folder():
            counts[state] = counts.get(state, 0) + n
        return counts

    def counts_by_folder(self) -> list[tuple[Any, str, int]]:
        """(folder, state, rows) for every state a folder has rows in."""
        try:
            rows = self._conn().execute("SELECT folder, state, n FROM state_counts WHERE n > 0")
            return [tuple(r) for r in rows]
        except sqlite3.OperationalError:  # read-only, from before the counters: count
            return [tuple(r) for r in self._conn().execute(
                "SELECT folder, state, COUNT(*) FROM files GROUP BY folder, state")]

    # -- writes --------------------------------------------------------------

    def add(self, *, path: str, folder: str, index_id: str, state: str = State.SETTLING,
            detail: str | None = None, **fields: Unpack[Fields]) -> FileRecord:
        """Insert a live row for ``path`` (which must not have one already)."""
        return self.get(self.insert(path=path, folder=folder, index_id=index_id, state=state,
                                    detail=detail, **fields))

    def insert(self, *, path: str, folder: str, index_id: str, state: str = State.SETTLING,
               detail: str | None = None, **fields: Unpack[Fields]) -> int:
        """``add`` returning only the new row's id (discovery needs no more)."""
        now = self.clock()
        cols = {"path": db_path(path), "folder": db_path(folder), "index_id": index_id,
                "state": state, "discovered_at": now, "updated_at": now, **checked_fields(fields)}
        with self._write() as conn:
            cur = conn.execute(
                f"INSERT INTO files ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                tuple(cols.values()),
            )
            conn.execute(
                "INSERT INTO history (file_id, at, from_state, to_state, detail) "
                "VALUES (?, ?, NULL, ?, ?)", (cur.lastrowid, now, state, db_text(detail)),
            )
        file_id = cur.lastrowid
        assert file_id is not None  # an INSERT into a rowid table always sets it
        return file_id

    def transition(self, file_id: int, state: str, detail: str | None = None,
                   *, expect: tuple[str, ...] | None = None, claim_content: bool = False,
                   events: Sequence[outbox.OutboxEntry] = (),
                   **fields: Unpack[Changes]) -> FileRecord:
        """Move a row to ``state`` and record why; one INFO log line per change.

        ``expect`` guards against racing writers: the change only happens if
        the row is currently in one of those states (else StaleState).
        ``claim_content`` makes the change conditional on no other row holding
        the same sha256 in the same index (else ContentTaken), checked in the
        same transaction so two workers can never both upload one content; when
        the change starts a multipart upload, also on no other index's row
        uploading it as an asset right now (else AssetInFlight: one upload
        serves every index).
        ``events`` (webhooks) go to the outbox in the same transaction as the change.
        """
        now = self.clock()
        updates = {**checked_fields(fields), "state": state, "updated_at": now}
        with self._write() as conn:
            row = conn.execute("SELECT state FROM files WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                raise KeyError(file_id)
            old = row["state"]
            if expect is not None and old not in expect:
                raise StaleState(f"file {file_id} is {old}, expected one of {expect}")
            if claim_content:
                _claim_content(conn, file_id, updates.get("index_id"))
                if updates.get("upload_method") == "multipart":
                    _claim_asset(conn, file_id, updates.get("index_id"))
            assignments = ", ".join(f"{k} = ?" for k in updates)
            conn.execute(f"UPDATE files SET {assignments} WHERE id = ?",
                         (*updates.values(), file_id))
            if old != state or detail:
                conn.execute(
                    "INSERT INTO history (file_id, at, from_state, to_state, detail) "
                    "VALUES (?, ?, ?, ?, ?)", (file_id, now, old, state, db_text(detail)),
                )
            outbox.insert(conn, events, now)
        record = self.get(file_id)
        if old != state:
            _log_transition(record, old, detail)
            self.telemetry.transition(record, old)
        return record

    def note(self, file_id: int, detail: str) -> None:
        """Add a history line without changing the state (e.g. an operator's retry)."""
        with self._write() as conn:
            state = conn.execute("SELECT state FROM files WHERE id = ?", (file_id,)).fetchone()[0]
            conn.execute("INSERT INTO history (file_id, at, from_state, to_state, detail) "
                         "VALUES (?, ?, ?, ?, ?)", (file_id, self.clock(), state, state,
                                                    db_text(detail)))

    def forget(self, file_id: int) -> None:
        """Delete a settling row that was never ours (several hosts: another host's file)."""
        with self._write() as conn:
            if conn.execute("DELETE FROM files WHERE id = ? AND state = ? RETURNING id",
                            (file_id, State.SETTLING)).fetchone() is not None:
                conn.execute("DELETE FROM history WHERE file_id = ?", (file_id,))

    def mark_closed_cleanly(self) -> None:
        """The daemon stops in order: the next open may skip the full integrity check."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('closed_cleanly', '1')")

    def publish_runtime(self, snapshot: RuntimeSnapshot) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO runtime (id, snapshot, updated_at) "
                         "VALUES (1, ?, ?)", (snapshot_to_json(snapshot), self.clock()))

    def update(self, file_id: int, **fields: Unpack[Changes]) -> None:
        """Change columns without a state change (e.g. the remote status)."""
        updates = {**checked_fields(fields), "updated_at": self.clock()}
        assignments = ", ".join(f"{k} = ?" for k in updates)
        with self._write() as conn:
            conn.execute(f"UPDATE files SET {assignments} WHERE id = ?",
                         (*updates.values(), file_id))

    # -- index models (the validation profile's cache) ------------------------

    def save_index_models(self, index_id: str, models: tuple[str, ...]) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO index_models (index_id, models, checked_at) "
                         "VALUES (?, ?, ?)", (index_id, json.dumps(list(models)), self.clock()))

    def index_models(self, index_id: str) -> tuple[tuple[str, ...], float] | None:
        """The index's models as last saved, and when (wall clock), if ever."""
        try:
            row = self._conn().execute("SELECT models, checked_at FROM index_models "
                                       "WHERE index_id = ?", (index_id,)).fetchone()
        except sqlite3.OperationalError:  # a read-only database from before the table
            return None
        return (tuple(json.loads(row[0])), row[1]) if row else None

    # -- retention ------------------------------------------------------------

    def prune(self, cutoff: float, batch: int) -> int:
        """Forget up to ``batch`` failed or vanished files and up to ``batch`` done ones last
        changed before ``cutoff`` (rows and history), and up to ``batch`` webhook events
        delivered before it; returns how many rows went.

        Kept forever, without its history: a file that reached done with a task
        (``KEPT_SQL``), which dedupe needs for as long as the index may hold its video.
        Each call is one short write transaction, so the daemon's writers never wait long.
        """
        with self._write() as conn:
            return (prune_files(conn, cutoff, batch) + prune_done(conn, cutoff, batch)
                    + outbox.prune_delivered(conn, cutoff, batch))

    def vacuum_some(self, pages: int) -> int | None:
        """Give up to ``pages`` free pages back to the file system; None when the database
        was made before incremental vacuum (only ``VACUUM``, daemon stopped, shrinks it)."""
        conn = self._conn()
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return None
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        # executescript steps the pragma to its end (execute frees one page per step)
        conn.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
        return min(free, pages)

    def free_bytes(self) -> int:
        conn = self._conn()
        return (conn.execute("PRAGMA freelist_count").fetchone()[0]
                * conn.execute("PRAGMA page_size").fetchone()[0])


class StaleState(Exception):
    """The row was not in the state the caller expected."""


class ContentTaken(Exception):
    """Another row already holds a task for this content in this index."""

    def __init__(self, holder: FileRecord) -> None:
        super().__init__(f"same content as {holder.path} (file {holder.id})")
        self.holder = holder


class AssetInFlight(Exception):
    """Another index's row is uploading this content as an asset: wait, then index it."""

    def __init__(self, holder: FileRecord) -> None:
        super().__init__(f"same content as {holder.path} (file {holder.id}), being uploaded "
                         f"for index {holder.index_id}")
        self.holder = holder


class CorruptDatabase(Exception):
    """SQLite reports the state database as damaged."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


NEWEST_ID = 2**63 - 1  # SQLite's largest rowid: newer than any real row

# A holder has a task for the content, is sending it now, or sent it once and
# waits to retry (that attempt may have created a task). Among waiting rows
# the older one holds, so two of them never wait for each other.
HOLDER_SQL = """
SELECT * FROM files WHERE sha256 = :sha AND index_id = :index AND id != :id AND (
    state IN ('uploading', 'indexing')
    OR (state IN ('finalizing', 'done') AND outcome = 'ready')
    OR (state IN ('settling', 'queued', 'validating') AND attempts > 0 AND id < :id)
) ORDER BY state = 'done' DESC, id LIMIT 1
"""


# One upload, many indexes. A content's asset, once ready, can be indexed into any index:
# a row of another index whose multipart upload was indexed (so its asset was ready).
READY_ASSET_SQL = """
SELECT * FROM files WHERE sha256 = :sha AND index_id != :index AND id != :id
    AND asset_id IS NOT NULL AND indexed_asset_id IS NOT NULL
ORDER BY id DESC LIMIT 1
"""
# ... and one on its way there: uploading as an asset, its asset not indexed yet (it may
# still be processing), or waiting to resume its session. The older waiter holds.
ASSET_IN_FLIGHT_SQL = """
SELECT * FROM files WHERE sha256 = :sha AND index_id != :index AND id != :id
    AND upload_method = 'multipart' AND indexed_asset_id IS NULL AND (
        state = 'uploading'
        OR (state = 'indexing' AND asset_id IS NOT NULL)
        OR (state IN ('settling', 'queued', 'validating') AND upload_id IS NOT NULL
            AND id < :id)
) ORDER BY id LIMIT 1
"""


def _claim_asset(conn: sqlite3.Connection, file_id: int, index_id: str | None) -> None:
    row = conn.execute("SELECT sha256, index_id FROM files WHERE id = ?", (file_id,)).fetchone()
    if row["sha256"] is None:
        return
    found = conn.execute(ASSET_IN_FLIGHT_SQL, {"sha": row["sha256"], "id": file_id,
                                               "index": index_id or row["index_id"]}).fetchone()
    if found is not None:
        raise AssetInFlight(record_from_row(found))


def _content_holder(conn: sqlite3.Connection, file_id: int, sha256: str | None,
                    index_id: str) -> FileRecord | None:
    if sha256 is None:
        return None
    row = conn.execute(HOLDER_SQL, {"sha": sha256, "index": index_id, "id": file_id}).fetchone()
    return record_from_row(row) if row else None


def _claim_content(conn: sqlite3.Connection, file_id: int, index_id: str | None) -> None:
    """``index_id``: the index this transition moves the row to, if it changes it."""
    row = conn.execute("SELECT sha256, index_id FROM files WHERE id = ?", (file_id,)).fetchone()
    holder = _content_holder(conn, file_id, row["sha256"], index_id or row["index_id"])
    if holder is not None:
        raise ContentTaken(holder)


def _log_transition(record: FileRecord, old: str, detail: str | None) -> None:
    task = f" task={record.task_id}" if record.task_id else ""
    why = f": {detail}" if detail else ""
    logger.info("%s: %s -> %s%s%s", display(record.path), old, record.state, task, why)
