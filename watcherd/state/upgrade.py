"""What opening a database does beyond connecting: bring an older schema up to date,
and check the file's integrity when the last stop was not clean."""

from __future__ import annotations

import sqlite3

from watcherd.state.schema import ADDED_COLUMNS, BACKFILL, COUNTERS, FILL_COUNTERS


def add_counters(conn: sqlite3.Connection) -> None:
    """Create the counters with their triggers, counted once from an older database's rows."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'state_counts'").fetchone():
        return
    conn.execute("BEGIN IMMEDIATE")  # no write may slip between the count and the triggers
    try:
        for statement in COUNTERS:
            conn.execute(statement)
        conn.execute(FILL_COUNTERS)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def check_unless_closed_cleanly(conn: sqlite3.Connection) -> str:
    """``PRAGMA quick_check`` reads every page (1.1 s at a million files): run it after a
    crash, a kill or a power cut, not after the daemon last stopped in order."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'closed_cleanly'").fetchone()
    conn.execute("DELETE FROM meta WHERE key = 'closed_cleanly'")
    if row is not None and row[0] == "1":
        return "ok"
    return str(conn.execute("PRAGMA quick_check").fetchone()[0])


def add_missing_columns(conn: sqlite3.Connection) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(files)")}
    missing = [name for name in ADDED_COLUMNS if name not in present]
    if not missing:
        return
    conn.execute("BEGIN IMMEDIATE")  # a column is never added without its backfill
    try:
        for name in missing:
            conn.execute(f"ALTER TABLE files ADD COLUMN {name} {ADDED_COLUMNS[name]}")
            if name in BACKFILL:
                conn.execute(BACKFILL[name])
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return True
    text = str(exc)
    return "malformed" in text or "not a database" in text
