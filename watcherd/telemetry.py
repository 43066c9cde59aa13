"""The events the daemon's parts report for its metrics; each call a no-op when metrics are off.

Each part that sees an event holds the ``Telemetry`` the daemon handed it
(``telemetry``) and calls it at one point: the API client for every request it
sends, the store for every change of a file's state, the upload gate for every
retry and pause, the index pauses for an index gone. This base class does
nothing, so a part built without metrics (tests, the CLI, ``metrics`` unset)
pays one method call; ``service/metrics.py`` overrides it with Prometheus
counters. Nothing here is global: there is no registry to reach for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcherd.errors import TransientError
    from watcherd.state.schema import FileRecord


class Telemetry:
    def api_request(self, method: str, route: str, status: int | None) -> None:
        """A request went to the API: ``route`` is its template (``/tasks/{id}``),
        ``status`` the answer's, None when none came (connection, timeout)."""

    def transition(self, record: FileRecord, old: str) -> None:
        """``record`` (as written) changed state from ``old``."""

    def retry(self, error: TransientError) -> None:
        """Uploads wait out a backoff after ``error``."""

    def pause(self, kind: str) -> None:
        """A pause began: the exception class that caused it (``AuthError``…), or
        ``IndexGone`` for one index's folders."""


NO_TELEMETRY = Telemetry()
