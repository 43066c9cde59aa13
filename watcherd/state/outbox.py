"""The webhook outbox: every event, per receiver, until it is delivered or dead.

An event is inserted in the same transaction as the state change it tells
of (``Store.transition(events=...)``), so a crash can lose neither one
without the other: what is in the table is delivered after a restart (at
least once; receivers dedupe on the event id, the same on every retry).

Each row is one event for one receiver. A receiver's rows with the same
``ordering`` key (one file's events; the account's pauses) go out in the
order they were made: a row waits while an older one with its key is still
pending. Rows of other keys, and other receivers, never wait for it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watcherd.state.store import Store

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    receiver TEXT NOT NULL,
    ordering TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    created_at REAL NOT NULL,
    window_start REAL NOT NULL,
    next_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_event ON outbox(event_id, receiver);
CREATE INDEX IF NOT EXISTS outbox_status ON outbox(status, receiver, ordering, seq);
"""

# The oldest due row per ordering key of one receiver, none of whose older
# rows with the same key is still pending.
DUE_SQL = """
SELECT * FROM outbox AS o WHERE status = 'pending' AND receiver = :receiver
    AND next_at <= :now AND NOT EXISTS (
        SELECT 1 FROM outbox AS p WHERE p.status = 'pending' AND p.receiver = o.receiver
            AND p.ordering = o.ordering AND p.seq < o.seq)
ORDER BY seq LIMIT 1
"""


@dataclass(frozen=True)
class OutboxEntry:
    """One event for one receiver, as written with the state change."""
    event_id: str
    event_type: str
    receiver: str
    ordering: str
    body: str


@dataclass(frozen=True)
class Delivery:
    """A row of the outbox."""
    seq: int
    event_id: str
    event_type: str
    receiver: str
    ordering: str
    body: str
    status: str
    created_at: float
    window_start: float
    next_at: float
    attempts: int
    last_error: str | None
    delivered_at: float | None


def insert(conn: sqlite3.Connection, entries: Iterable[OutboxEntry], now: float) -> None:
    """Inside the caller's transaction (``Store.transition``, ``Outbox.add``)."""
    entries = list(entries)
    if not entries:
        return
    conn.executemany(
        "INSERT OR IGNORE INTO outbox (event_id, event_type, receiver, ordering, body, "
        "created_at, window_start, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(e.event_id, e.event_type, e.receiver, e.ordering, e.body, now, now, now)
         for e in entries])


def prune_delivered(conn: sqlite3.Connection, cutoff: float, batch: int) -> int:
    """Retention: delivered events older than ``cutoff`` (pending and dead ones stay)."""
    return conn.execute(
        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE status = 'delivered' "
        "AND delivered_at < ? LIMIT ?)", (cutoff, batch)).rowcount


class Outbox:
    """The outbox's reads and writes, on ``store``'s connections and clock."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, entries: list[OutboxEntry]) -> None:
        """Events with no row change of their own (a pause begins or ends)."""
        if entries:
            with self.store._write() as conn:
                insert(conn, entries, self.store.clock())

    def next_due(self, receiver: str, now: float) -> Delivery | None:
        row = self.store._conn().execute(DUE_SQL, {"receiver": receiver, "now": now}).fetchone()
        return _delivery(row) if row else None

    def delivered(self, seq: int) -> None:
        with self.store._write() as conn:
            conn.execute("UPDATE outbox SET status = 'delivered', attempts = attempts + 1, "
                         "last_error = NULL, delivered_at = ? WHERE seq = ?",
                         (self.store.clock(), seq))

    def failed(self, seq: int, error: str, next_at: float | None) -> None:
        """One attempt failed: retry at ``next_at``, or dead-letter it (None)."""
        status = PENDING if next_at is not None else DEAD
        with self.store._write() as conn:
            conn.execute("UPDATE outbox SET status = ?, attempts = attempts + 1, "
                         "last_error = ?, next_at = COALESCE(?, next_at) WHERE seq = ?",
                         (status, error, next_at, seq))

    def dead_letter_unrouted(self, receivers: tuple[str, ...], window_start_before: float) -> int:
        """Pending rows for a receiver no longer in the config, whose retry window is over."""
        marks = ",".join("?" * len(receivers))
        with self.store._write() as conn:
            return conn.execute(
                f"UPDATE outbox SET status = 'dead', last_error = 'receiver no longer in the "
                f"config' WHERE status = 'pending' AND receiver NOT IN ({marks}) "
                "AND window_start < ?", (*receivers, window_start_before)).rowcount

    def replay(self, event_id: str) -> int:
        """Send a dead (or delivered) event again, with a fresh retry window; how many rows."""
        now = self.store.clock()
        try:
            with self.store._write() as conn:
                return conn.execute(
                    "UPDATE outbox SET status = 'pending', window_start = ?, next_at = ?, "
                    "attempts = 0, delivered_at = NULL WHERE event_id = ? "
                    "AND status != 'pending'", (now, now, event_id)).rowcount
        except sqlite3.OperationalError:  # a database from before the outbox: no events
            return 0

    def counts(self) -> dict[str, int]:
        """Rows per status (pending, delivered, dead); empty before the first event."""
        try:
            rows = self.store._conn().execute(
                "SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        except sqlite3.OperationalError:  # read-only, from before the outbox
            return {}
        return dict(rows)

    def depth(self) -> int:
        """Deliveries still to make (the metric ``outbox depth``)."""
        return self.counts().get(PENDING, 0)

    def listed(self, *statuses: str, limit: int = 100) -> list[Delivery]:
        """Rows in ``statuses``, oldest first."""
        marks = ",".join("?" * len(statuses))
        try:
            rows = self.store._conn().execute(
                f"SELECT * FROM outbox WHERE status IN ({marks}) ORDER BY seq LIMIT ?",
                (*statuses, limit)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [_delivery(row) for row in rows]


def _delivery(row: Any) -> Delivery:
    return Delivery(**dict(zip(row.keys(), row, strict=True)))
