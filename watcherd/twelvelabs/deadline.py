"""A deadline for a whole HTTP request, which requests and urllib3 do not have.

Their timeouts bound each socket operation, so an answer trickled one byte
every couple of seconds never times out and holds its thread forever. Here a
small watcher thread shuts the request's socket down once the deadline has
passed: the blocked read sees the end of the stream, the request fails, and
the caller turns that into a retryable transport error.

Two kinds: a total deadline (every call but an upload), and a stall deadline
that each sign of progress pushes back (an upload of any size may take as
long as it needs, as long as it moves).

The connection is found through the connection pools: ``WATCHED_POOLS``
replaces urllib3's pool classes so the pool hands each connection it gives
out to the deadline of the thread that asked for it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()  # the deadline of the request this thread is making

# While the connection is not open yet (connect has its own timeout), the
# watcher looks again this often.
RECHECK_SECONDS = 0.2


class Deadline:
    """Use as a context manager around exactly one request."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._cond = threading.Condition()
        self._until = clock() + seconds
        self._conn: Any = None
        self._finished = False
        self._thread: threading.Thread | None = None
        self.expired = False

    def extend(self) -> None:
        """Progress was made: the full ``seconds`` start again from now."""
        with self._cond:
            self._until = self._clock() + self.seconds

    def attach(self, conn: Any) -> None:
        with self._cond:
            self._conn = conn
            if self.expired:
                _cut(conn)

    def __enter__(self) -> Self:
        _current.deadline = self
        self._thread = threading.Thread(target=self._watch, name="api-deadline", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _current.deadline = None
        with self._cond:
            self._finished = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        with self._cond:
            while not self._finished:
                remaining = self._until - self._clock()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self.expired = True
                if self._conn is not None and _cut(self._conn):
                    return
                self._cond.wait(RECHECK_SECONDS)


def _cut(conn: Any) -> bool:
    """End the connection under a blocked read; False if it has no socket yet."""
    sock = getattr(conn, "sock", None)
    if sock is None:
        return False
    try:
        # The plain socket method, also for TLS: it ends the reader's wait
        # without touching the SSL object the reading thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to wait on
    return True


class _WatchedPool:
    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        deadline: Deadline | None = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.attach(conn)
        return conn


class WatchedHTTPConnectionPool(_WatchedPool, HTTPConnectionPool):
    pass


class WatchedHTTPSConnectionPool(_WatchedPool, HTTPSConnectionPool):
    pass


WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool}
