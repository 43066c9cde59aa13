"""Retention's SQL: forget old finished files and history, keep what dedupe needs."""

from __future__ import annotations

import json
import sqlite3

from watcherd.state.states import State

# Done rows retention keeps: what ``HOLDER_SQL`` finds as holding a task for the content.
KEPT_SQL = "outcome IS 'ready' AND sha256 IS NOT NULL"


def prune_files(conn: sqlite3.Connection, cutoff: float, batch: int) -> int:
    """Failed and vanished files: nothing needs them once they are old, except a failed
    file left in place (``after: leave``, ``dest_path`` is its own path): its row is what
    keeps that version from being taken again."""
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM files WHERE state IN (?, ?) AND updated_at < ? "
        "AND dest_path IS NOT path LIMIT ?",
        (State.FAILED, State.VANISHED, cutoff, batch))]
    return delete_files(conn, ids)


def prune_done(conn: sqlite3.Connection, cutoff: float, batch: int) -> int:
    """Done files, oldest first from where the last call stopped (a mark in ``meta``), so
    each is visited once, not on every pass: their history goes, and the row too unless
    dedupe needs it (``KEPT_SQL``)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'pruned_through'").fetchone()
    after_at, after_id = json.loads(row[0]) if row else (0.0, 0)
    rows = conn.execute(
        f"SELECT id, updated_at, {KEPT_SQL} FROM files WHERE state = ? AND "
        "(updated_at, id) > (?, ?) AND updated_at < ? ORDER BY updated_at, id LIMIT ?",
        (State.DONE, after_at, after_id, cutoff, batch)).fetchall()
    if not rows:
        return 0
    kept = [r[0] for r in rows if r[2]]
    gone = conn.execute(f"DELETE FROM history WHERE file_id IN ({','.join('?' * len(kept))}) "
                        "AND at < ?", (*kept, cutoff)).rowcount
    gone += delete_files(conn, [r[0] for r in rows if not r[2]])
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('pruned_through', ?)",
                 (json.dumps([rows[-1][1], rows[-1][0]]),))
    return gone or len(rows)  # visiting kept rows is progress too: come back for more


def delete_files(conn: sqlite3.Connection, ids: list[int]) -> int:
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    for table in ("chunks", "upload_sessions"):  # a session a file left behind mid-upload
        conn.execute(f"DELETE FROM {table} WHERE file_id IN ({marks})", ids)
    gone = conn.execute(f"DELETE FROM history WHERE file_id IN ({marks})", ids).rowcount
    return gone + conn.execute(f"DELETE FROM files WHERE id IN ({marks})", ids).rowcount
