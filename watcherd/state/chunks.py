"""The multipart path's ledger: each session's fingerprint and each chunk's ETag.

The row in ``files`` names the live session (``upload_id``, ``chunk_size``, ...); this
ledger holds what a resume needs beyond it. A session is opened in the same
transaction as the row receives the create answer, each ETag is stored the moment its
PUT answers, and everything is forgotten in the transaction that hands the file on or
gives the session up, so no ETag can outlive its session or point at another one.
(``Store.batch`` keeps the writes that completed when a later one fails: a fingerprint
without its row's session is forgotten by the next open, and a row whose ledger is gone
gives its session up at the next resume; neither sends a wrong byte.)
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Unpack

from watcherd.state.schema import Changes, FileRecord
from watcherd.state.store import Store


@dataclass(frozen=True)
class SessionPrint:
    """What a session was made for: the file's content and the headers its PUTs carry."""
    upload_id: str
    sha256: str
    size: int
    upload_headers: dict[str, str]


class ChunkLedger:
    def __init__(self, store: Store) -> None:
        self.store = store

    def open_session(self, file_id: int, state: str, detail: str, fingerprint: SessionPrint,
                     **fields: Unpack[Changes]) -> FileRecord:
        """Store the session on the row (``fields``) and its fingerprint, in one transaction;
        whatever an earlier session of this file left is forgotten in the same one."""
        with self.store.batch():
            self._forget(file_id)
            with self.store._write() as conn:
                conn.execute("INSERT OR REPLACE INTO upload_sessions (upload_id, file_id, "
                             "sha256, size, upload_headers) VALUES (?, ?, ?, ?, ?)",
                             (fingerprint.upload_id, file_id, fingerprint.sha256,
                              fingerprint.size, json.dumps(fingerprint.upload_headers)))
            return self.store.transition(file_id, state, detail, **fields)

    def close_session(self, file_id: int, state: str, detail: str,
                      **fields: Unpack[Changes]) -> FileRecord:
        """Move the row on (``fields``) and forget its session's ledger, in one transaction."""
        with self.store.batch():
            self._forget(file_id)
            return self.store.transition(file_id, state, detail, **fields)

    def fingerprint(self, upload_id: str) -> SessionPrint | None:
        row = self.store._conn().execute(
            "SELECT sha256, size, upload_headers FROM upload_sessions WHERE upload_id = ?",
            (upload_id,)).fetchone()
        if row is None:
            return None
        return SessionPrint(upload_id, row[0], row[1], json.loads(row[2]))

    def record_etag(self, file_id: int, upload_id: str, chunk_index: int, etag: str) -> None:
        with self.store._write() as conn:
            conn.execute("INSERT OR REPLACE INTO chunks (upload_id, chunk_index, file_id, etag, "
                         "reported) VALUES (?, ?, ?, ?, 0)",
                         (upload_id, chunk_index, file_id, etag))

    def mark_reported(self, upload_id: str, chunk_indexes: list[int]) -> None:
        with self.store._write() as conn:
            conn.executemany("UPDATE chunks SET reported = 1 WHERE upload_id = ? AND "
                             "chunk_index = ?", [(upload_id, i) for i in chunk_indexes])

    def etags(self, upload_id: str) -> dict[int, str]:
        """Chunk index → ETag of every chunk of the session whose PUT answered."""
        rows = self.store._conn().execute(
            "SELECT chunk_index, etag FROM chunks WHERE upload_id = ?", (upload_id,))
        return {int(row[0]): str(row[1]) for row in rows}

    def counts(self, upload_id: str) -> tuple[int, int]:
        """(chunks sent, of which reported) for a session."""
        try:
            row = self.store._conn().execute(
                "SELECT COUNT(*), COALESCE(SUM(reported), 0) FROM chunks WHERE upload_id = ?",
                (upload_id,)).fetchone()
        except sqlite3.OperationalError:  # read-only, a database from before the table
            return 0, 0
        return int(row[0]), int(row[1])

    def _forget(self, file_id: int) -> None:
        with self.store._write() as conn:
            conn.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))
            conn.execute("DELETE FROM upload_sessions WHERE file_id = ?", (file_id,))
