"""The daemon's Prometheus metrics: counted as events happen, or read when scraped.

``Metrics`` is the ``Telemetry`` the daemon hands its parts when
``metrics.listen`` is set: API requests (the client's send), uploads and
their bytes and durations, drop-to-ready times (a file's state changes, from
the store), retries and pauses (the upload gate, index pauses). What is
already known elsewhere is not counted twice but read at scrape time by
``DaemonGauges``: files per folder and state (the ``state_counts`` table, a few
rows), queue depths, the backoff left, pauses in force, each folder's
observer, the health verdict ``/healthz`` gives, and the webhooks: the
sender thread's own totals and the outbox's rows by status.

Every label value comes from a closed set (states, route templates, status
classes, exception kinds, configured folders); never a file name or an id.
The registry is this object's own, not prometheus_client's global one.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from watcherd import __version__
from watcherd.errors import TransientError
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses
from watcherd.intake.watcher import Watcher
from watcherd.names import display
from watcherd.state.outbox import DEAD, PENDING
from watcherd.state.schema import FileRecord
from watcherd.state.states import STATE_NAMES, State
from watcherd.state.store import Store
from watcherd.telemetry import Telemetry

logger = logging.getLogger(__name__)

# An upload of a few MB takes seconds, one of 2 GB on a slow uplink an hour or two.
UPLOAD_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
# Drop to ready: settling, the upload and Twelve Labs' indexing (minutes to hours).
READY_BUCKETS = (30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400)


P = ParamSpec("P")
M = TypeVar("M")


def never_raises(method: Callable[Concatenate[M, P], None]) -> Callable[Concatenate[M, P], None]:
    """Counting runs inside the pipeline's own calls (a state change, a request): a
    fault in it is logged and the event left uncounted, never a fault of the file's."""
    @functools.wraps(method)
    def guarded(self: M, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception:
            logger.exception("metrics: %s failed; that event is not counted", method.__name__)
    return guarded


class Metrics(Telemetry):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.api_requests = Counter(
            "watcherd_api_requests", "Requests sent to the Twelve Labs API, by method, route "
            "template and the answer's status class (error: no answer)",
            ["method", "endpoint", "status_class"], registry=r)
        self.uploads_started = Counter(
            "watcherd_uploads_started", "Upload attempts begun (a file entered uploading)",
            registry=r)
        self.uploads_finished = Counter(
            "watcherd_uploads_finished", "Uploads that ended with a task (uploading → indexing)",
            registry=r)
        self.uploads_failed = Counter(
            "watcherd_uploads_failed", "Upload attempts that ended without a task, by the "
            "state the file went to (queued: retried; settling: changed or unreadable; "
            "finalizing: refused)", ["next_state"], registry=r)
        self.uploaded_bytes = Counter(
            "watcherd_uploaded_bytes", "Bytes of the files whose upload finished", registry=r)
        self.upload_seconds = Histogram(
            "watcherd_upload_duration_seconds", "From the start of the successful upload "
            "attempt to the task id", buckets=UPLOAD_BUCKETS, registry=r)
        self.ready_seconds = Histogram(
            "watcherd_drop_to_ready_seconds", "From a file's discovery to done/ (ready)",
            buckets=READY_BUCKETS, registry=r)
        self.files_finished = Counter(
            "watcherd_files_finished", "Files that reached a final state", ["state"],
            registry=r)
        self.retries = Counter(
            "watcherd_upload_retries", "Failures uploads wait out with a backoff, by reason",
            ["reason"], registry=r)
        self.pauses = Counter(
            "watcherd_upload_pauses", "Pauses begun: every upload (the account) or one "
            "index's folders (index_gone)", ["reason"], registry=r)
        Info("watcherd_build", "The running watcherd", registry=r).info(
            {"version": __version__, "python": platform.python_version()})
        ProcessCollector(registry=r)  # memory, CPU, open files of this process

    def watch(self, gauges: Collector) -> None:
        """Add what is read at scrape time (the daemon's parts exist only after us)."""
        self.registry.register(gauges)

    # -- Telemetry ------------------------------------------------------------------

    @never_raises
    def api_request(self, method: str, route: str, status: int | None) -> None:
        status_class = "error" if status is None else f"{status // 100}xx"
        self.api_requests.labels(method, route, status_class).inc()

    @never_raises
    def transition(self, record: FileRecord, old: str) -> None:
        new = record.state
        if new == State.UPLOADING:
            self.uploads_started.inc()
        elif old == State.UPLOADING and new == State.INDEXING:
            self.uploads_finished.inc()
            self.uploaded_bytes.inc(record.size or 0)
            if record.upload_started_at is not None and record.uploaded_at is not None:
                self.upload_seconds.observe(max(0.0, record.uploaded_at -
                                                record.upload_started_at))
        elif old == State.UPLOADING:
            self.uploads_failed.labels(new).inc()
        if new in (State.DONE, State.FAILED, State.VANISHED):
            self.files_finished.labels(new).inc()
        if new == State.DONE:
            finished = record.finished_at or record.updated_at
            self.ready_seconds.observe(max(0.0, finished - record.discovered_at))

    @never_raises
    def retry(self, error: TransientError) -> None:
        self.retries.labels(retry_reason(error)).inc()

    @never_raises
    def pause(self, kind: str) -> None:
        self.pauses.labels(snake_case(kind)).inc()


def retry_reason(error: TransientError) -> str:
    """A closed set: the rate-limit window, a deadline, no answer, or the HTTP status."""
    if error.code == "rate_limit_used_up":
        return "rate_limit_window"
    if error.code == "deadline_exceeded":
        return "deadline"
    if error.status is None:
        return "no_answer"
    if error.status in (408, 429):
        return f"http_{error.status}"
    return "http_5xx" if error.status >= 500 else "bad_answer"


def snake_case(kind: str) -> str:
    """``KeyUnavailable`` → ``key_unavailable``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


# A key of the webhook totals (``webhooks.delivery.new_totals``) → its counter
# (prometheus_client adds the "_total").
WEBHOOK_TOTALS = (
    ("delivered", "watcherd_webhook_deliveries", "Webhook deliveries a receiver took (2xx)"),
    ("failed", "watcherd_webhook_failures", "Webhook delivery attempts that failed (no "
     "answer or not 2xx); each is retried until webhook_retry_hours"),
    ("dead", "watcherd_webhook_dead_lettered", "Webhook events given up on after "
     "webhook_retry_hours (watcherd webhooks --replay ID sends one again)"),
)


class DaemonGauges(Collector):
    """What is true right now, read from the daemon's parts on each scrape."""

    def __init__(self, *, store: Store, gate: UploadGate, index_pauses: IndexPauses,
                 watcher: Watcher, queues: Mapping[str, Callable[[], int]],
                 folders: Callable[[], Iterable[Path]],
                 verdict: Callable[[], str | None],
                 webhook_totals: Callable[[], Mapping[str, int]] = dict,
                 outbox_counts: Callable[[], Mapping[str, int]] = dict) -> None:
        self.store = store
        self.gate = gate
        self.index_pauses = index_pauses
        self.watcher = watcher
        self.queues = queues
        self.folders = folders
        self.verdict = verdict
        self.webhook_totals = webhook_totals
        self.outbox_counts = outbox_counts

    def collect(self) -> Iterator[Metric]:
        yield self._files()
        depth = GaugeMetricFamily("watcherd_queue_depth", "Items waiting in each internal "
                                  "queue (parked: files waiting for their index)",
                                  labels=["queue"])
        for name, size in self.queues.items():
            depth.add_metric([name], size())
        yield depth
        yield from self._uploads_held()
        observers = GaugeMetricFamily("watcherd_observer_up", "1 while the folder's watch "
                                      "(inotify or polling) sees its events", labels=["folder"])
        for watch in self.watcher.watches:
            observers.add_metric([display(watch.folder.path)], int(watch.healthy))
        yield observers
        yield GaugeMetricFamily("watcherd_healthy", "1 while /healthz answers 200 (the "
                                "systemd watchdog would be pinged)",
                                value=int(self.verdict() is None))
        yield from self._webhooks()

    def _files(self) -> GaugeMetricFamily:
        """Every configured folder × every state (zeros too), and any folder with rows."""
        counts: dict[tuple[str, str], int] = {
            (display(folder), state): 0 for folder in self.folders() for state in STATE_NAMES}
        for folder, state, n in self.store.counts_by_folder():
            counts[(display(os.fsdecode(folder)), state)] = n
        files = GaugeMetricFamily("watcherd_files", "Tracked files by folder and state",
                                  labels=["folder", "state"])
        for (folder, state), n in sorted(counts.items()):
            files.add_metric([folder, state], n)
        return files

    def _webhooks(self) -> Iterator[Metric]:
        """The sender's totals (since the daemon started) and the outbox still to send."""
        totals = self.webhook_totals()
        for key, name, text in WEBHOOK_TOTALS:
            yield CounterMetricFamily(name, text, value=totals.get(key, 0))
        outbox = GaugeMetricFamily("watcherd_webhook_outbox", "Webhook deliveries still to "
                                   "make (pending) and given up on (dead, until replayed)",
                                   labels=["status"])
        counts = self.outbox_counts()
        for status in (PENDING, DEAD):
            outbox.add_metric([status], counts.get(status, 0))
        yield outbox

    def _uploads_held(self) -> Iterator[Metric]:
        now = time.time()
        snapshot = self.gate.snapshot(now)
        until = snapshot["until"]
        remaining = 0.0 if until is None else max(0.0, until - now)
        yield GaugeMetricFamily("watcherd_backoff_remaining_seconds", "Seconds until uploads "
                                "may go again after a failure or the API's rate limit",
                                value=remaining)
        paused = GaugeMetricFamily("watcherd_uploads_paused", "1 while every upload is paused "
                                   "(reason: what paused them), else 0 with reason none",
                                   labels=["reason"])
        kind = snapshot["kind"]
        paused.add_metric([snake_case(kind) if kind else "none"], int(kind is not None))
        yield paused
        yield GaugeMetricFamily("watcherd_indexes_paused", "Indexes gone at Twelve Labs "
                                "whose folders' uploads are paused",
                                value=len(self.index_pauses.paused()))
