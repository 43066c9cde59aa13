"""One psycopg connection to the cluster's PostgreSQL, reopened on demand.

The driver is imported here only, when a coordinated daemon or command first
connects. A connection that breaks (the server restarts, the network drops)
is closed and reopened by the next use; the outage is logged once as an
ERROR and its end once as INFO, and every use meanwhile raises
``CoordinationUnavailable``. One statement or transaction at a time (a
lock): a psycopg connection must not interleave several threads' transactions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from watcherd.cluster.claims import ClaimBook
from watcherd.cluster.settings import CoordinationConfig
from watcherd.errors import CoordinationUnavailable

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5


def open_connection(dsn: str, schema: str, lease_seconds: float = 60.0) -> Any:
    """Autocommit, rows as dicts, our schema first; and two limits from the lease, because
    a host can be stopped (SIGSTOP, a GC pause) in the middle of a short transaction:
    the server ends such a transaction after a third of the lease, freeing its row and
    advisory locks, and no statement of ours waits for a lock longer than that either."""
    import psycopg  # only here: single-host installs never need the driver
    from psycopg.rows import dict_row

    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row,
                           connect_timeout=CONNECT_TIMEOUT_SECONDS,
                           application_name="watcherd")
    limit = f"{max(1000, int(lease_seconds * 1000 / 3))}ms"
    conn.execute(f'SET search_path TO "{schema}"')
    conn.execute(f"SET idle_in_transaction_session_timeout = '{limit}'")
    conn.execute(f"SET lock_timeout = '{limit}'")
    return conn


def driver_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    # Anything but a bug in our SQL: lost connections, a restarting server, timeouts.
    # IdleInTransactionSessionTimeout: we were stopped mid-transaction and the server
    # ended the session (``open_connection``): reconnect, like any lost connection.
    return (psycopg.OperationalError, psycopg.InterfaceError,
            psycopg.errors.IdleInTransactionSessionTimeout)


def lock_timeout() -> type[BaseException]:
    import psycopg

    return psycopg.errors.LockNotAvailable


class Connection:
    """One psycopg connection, reopened on demand, with the outage reported once."""

    def __init__(self, settings: CoordinationConfig, dsn: str,
                 on_open: Callable[[Any], None] | None = None) -> None:
        self.settings = settings
        self.dsn = dsn
        self.on_open = on_open
        self.lock = threading.RLock()
        self.book: ClaimBook | None = None
        self.down: str | None = None  # why PostgreSQL does not answer
        self.round_trips = 0  # statements sent (BEGIN/COMMIT included), for the log
        self.seconds = 0.0    # time spent waiting for them
        self._depth = 0

    @contextmanager
    def use(self) -> Iterator[ClaimBook]:
        with self.lock:
            try:
                if self.book is None:
                    conn = open_connection(self.dsn, self.settings.schema,
                                           self.settings.lease_seconds)
                    if self.on_open is not None:
                        self.on_open(conn)
                    self.book = ClaimBook(conn, self.settings.host_name,
                                          self.settings.lease_seconds)
                self._depth += 1
                before, started = self.book.round_trips, time.perf_counter()
                try:
                    yield self.book
                finally:
                    self._depth -= 1
                if self._depth == 0:  # a nested use is counted by the outer one
                    self.round_trips += self.book.round_trips - before
                    self.seconds += time.perf_counter() - started
            except lock_timeout() as exc:  # a host stopped mid-transaction: not an outage
                raise CoordinationUnavailable(f"a claim is locked: {exc}") from exc
            except driver_errors() as exc:
                self._lost(exc)
                raise CoordinationUnavailable(f"PostgreSQL does not answer: {exc}") from exc
            if self.down is not None:
                logger.info("PostgreSQL answers again; claiming resumes")
                self.down = None

    def _lost(self, exc: BaseException) -> None:
        if self.book is not None:
            try:
                self.book.conn.close()
            except Exception:  # noqa: BLE001 (closing a broken connection; it is gone anyway)
                pass
            self.book = None
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.down is None:
            logger.error("PostgreSQL does not answer (%s): no new file is claimed and no "
                         "claimed step runs until it does. Fix: %s", text,
                         CoordinationUnavailable.fix)
        self.down = text

    def probe(self) -> None:
        """One cheap statement: lifts ``down`` once PostgreSQL answers again."""
        with self.use() as book:
            book.ping()

    def close(self) -> None:
        with self.lock:
            if self.book is not None:
                self.book.conn.close()
                self.book = None
