"""Assemble the pipeline, run the main loop, shut down in order.

Threads: one observer per folder (watchdog's own), ``scanner``, ``settler``,
``upload-N``, ``poller``, ``finalizer``, ``pause-check`` and ``webhooks``. The main thread
owns signals (handlers only enqueue the signal number; the loop acts on it),
talks to systemd (READY, STATUS, WATCHDOG, RELOADING, STOPPING), supervises
the other threads and restarts dead observers. Under a systemd watchdog a dead
thread is not restarted in place: the pings stop and systemd restarts the
whole service, which is the better-tested path back to health. Every
health check also sweeps for files no thread holds (``putback.Sweep``).
A refused key at start pauses uploads instead of stopping: READY=1 goes out
with a STATUS= that says so, and the pause check resumes by itself.
The parts live beside it: ``threadfactories`` (making each thread), ``startup``
(cluster, database, pauses, recovery), ``supervision`` (the health round),
``readouts`` (what metrics, the CLI and STATUS read), ``shutdown`` (stopping in order).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from watcherd.config import Config
from watcherd.errors import ConfigError
from watcherd.exitcodes import EXIT_OK
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses
from watcherd.ingest.method import UploadPaths
from watcherd.ingest.progress import Progress, TerminalProgress
from watcherd.ingest.putback import InternalErrors, Sweep, put_back
from watcherd.intake.settle import Hint
from watcherd.intake.watcher import Scanner, Watcher
from watcherd.service.folderprofiles import log_profiles, resolve_profiles
from watcherd.service.health import Monitor
from watcherd.service.metrics import Metrics
from watcherd.service.metricsserver import MetricsServer
from watcherd.service.notify import Notifier
from watcherd.service.preflight import CHECK_TIMEOUTS, preflight
from watcherd.service.readouts import daemon_gauges, held_for_other_hosts, publish_runtime
from watcherd.service.reload import prepare_reload
from watcherd.service.retention import Retention
from watcherd.service.shutdown import stop_threads
from watcherd.service.startup import (
    log_started,
    make_coordinator,
    open_store,
    recover,
    tell_pauses,
)
from watcherd.service.supervision import held_files, supervise
from watcherd.service.threadfactories import thread_factories
from watcherd.state.instance import AlreadyRunning, InstanceLock
from watcherd.state.schema import FileRecord
from watcherd.state.store import Store
from watcherd.telemetry import NO_TELEMETRY
from watcherd.threads import ServiceThread
from watcherd.twelvelabs.apikey import key_for_request, resolve_api_key
from watcherd.twelvelabs.assets import AssetsApi
from watcherd.twelvelabs.client import TwelveLabsClient
from watcherd.webhooks.delivery import new_totals

if TYPE_CHECKING:
    from watcherd.cluster.coordinator import Coordinator

logger = logging.getLogger(__name__)

# In-flight uploads get this long to finish on SIGTERM; then they are aborted
# and redone cleanly next start. Keep it below the unit's TimeoutStopSec=.
SHUTDOWN_GRACE_SECONDS = 20.0
HEALTH_CHECK_SECONDS = 5.0


class Daemon:
    def __init__(self, config: Config, *, api: TwelveLabsClient | None = None,
                 store: Store | None = None, notifier: Notifier | None = None,
                 display: TerminalProgress | None = None) -> None:
        self.config = config
        self.lock = InstanceLock(config)
        self.store = store or Store(config.state_db)
        self.notifier = notifier or Notifier()
        self.api = api or TwelveLabsClient(
            config.api.base_url,
            # Read per request, from the config of the moment: a reload or a
            # rotated key file applies to the next request, and a key file
            # caught empty mid-rotation pauses uploads instead of failing one.
            lambda: key_for_request(self.config.api.key_file),
            connect_timeout=config.api.connect_timeout_seconds,
            io_timeout=config.api.io_timeout_seconds,
        )
        # Counted only when metrics.listen is set; every part gets the same object.
        self.metrics = Metrics() if config.metrics.listen else None
        telemetry = self.metrics or NO_TELEMETRY
        self.api.telemetry = self.store.telemetry = telemetry
        # The gate also holds uploads while the API says the upload rate limit is used up.
        self.gate = UploadGate(window=getattr(self.api, "rate_window", None),
                               telemetry=telemetry)
        self.index_pauses = IndexPauses(lambda: self.config, telemetry)
        self.paths = UploadPaths(lambda: self.config)  # what the account allows: multipart, /tasks
        self.internal_errors = InternalErrors()
        self.pause_wake = threading.Event()  # set on SIGHUP: check every pause now
        self.progress = Progress()
        self.assets = AssetsApi(self.api, connections=config.max_chunk_connections)
        # Chunk PUTs in flight across every upload worker (the uplink is shared); its size
        # is read at start only.
        self.chunk_connections = threading.BoundedSemaphore(config.max_chunk_connections)
        # Webhook attempts delivered, failed and dead-lettered since start (for metrics).
        self.webhook_totals = new_totals()
        self.intake: queue.SimpleQueue[Hint] = queue.SimpleQueue()
        self.work: queue.Queue[int] = queue.Queue()
        self.to_finalize: queue.Queue[int] = queue.Queue()  # a Queue: the sweep reads it
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.scanner = Scanner(config, self.intake)
        self.watcher = Watcher(config, self.intake, self.scanner)
        self.factories: dict[str, Callable[[], ServiceThread]] = thread_factories(self)
        self.threads: dict[str, ServiceThread] = {}
        self.sweep = Sweep(self.store, lambda: held_files(self), self._put_back)
        self.monitor = Monitor(notifier=self.notifier, store=self.store, progress=self.progress,
                               gate=self.gate, index_pauses=self.index_pauses, paths=self.paths,
                               watcher=self.watcher,
                               threads=lambda: [self.scanner, *self.threads.values()],
                               stall_seconds=config.stall_seconds,
                               publish=lambda problems: publish_runtime(self, problems),
                               display=display,
                               coordination=lambda: self.coordinator.describe()
                               if self.coordinator else None,
                               elsewhere=lambda: held_for_other_hosts(self))
        self.retention = Retention(self.store, lambda: self.config.history_retention_days,
                                   clock=self.store.clock)
        self.metrics_server: MetricsServer | None = None
        if self.metrics is not None:
            self.metrics.watch(daemon_gauges(self))
        self.started_at = time.time()
        # Several hosts (``coordination:``): made in start(), once the folders are locked.
        self.coordinator: Coordinator | None = None

    # -- lifecycle -----------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda s, _frame: self.signals.put(s))
        self.start()
        try:
            # Only now: the database is open, observers run, the first scan is queued.
            self.notifier.ready(self.monitor.summary())
            with self.monitor.display or contextlib.nullcontext():
                self._main_loop()
        finally:
            self.shutdown()
        return EXIT_OK

    def start(self) -> None:
        """Lock, check, open and recover; then start every thread."""
        self.lock.acquire()
        try:
            self._coordinate()
            if self.metrics is not None:  # a port in use stops the start here (ListenError)
                self.metrics_server = MetricsServer(self.config.metrics, self.metrics.registry,
                                                    self.monitor.verdict)
            with self.api.short_timeouts(*CHECK_TIMEOUTS) as quick:
                found = preflight(self.config, quick,
                                  resolve_api_key(self.config.api.key_file).source)
            if found.refused is not None:  # the pause check says so with the fix, and resumes
                self.gate.pause(found.refused)
            open_store(self.store, self.config)
            tell_pauses(self.store, lambda: self.config, self.index_pauses, self.gate)
            self._use_profiles(found.models)
            self.recover()
        except BaseException:
            self._stop_metrics()
            if self.coordinator is not None:
                self.coordinator.close()
            self.store.close()
            self.assets.close()
            self.api.close()
            self.lock.release()
            raise
        self._start_threads()

    def _coordinate(self) -> None:
        """Several hosts: mark the folders, migrate the schema, enter this host. PostgreSQL
        away at start is a pause (the lease thread retries), not a failure."""
        self.coordinator = make_coordinator(self.config)
        if self.coordinator is not None:
            self.coordinator.start()

    def _use_profiles(self, models: dict[str, tuple[str, ...]]) -> None:
        """Validate with each index's profile: as just asked, else as cached (ConfigError
        when an index can no longer take videos)."""
        config = resolve_profiles(self.config, models, self.store)
        log_profiles(config)
        self.config = config
        self.scanner.reconfigure(config)
        self.watcher.reconfigure(config)  # nothing runs yet: only hands over the folders

    def _start_threads(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.start()
        self.scanner.start()
        for name, factory in self.factories.items():
            self.threads[name] = factory()
            self.threads[name].start()
        self.watcher.start()
        self.scanner.request()
        log_started(self.watcher, self.config)

    def recover(self) -> None:
        """Pick up where the last run stopped (before any new upload)."""
        recover(self.store, self.intake, self.to_finalize)

    def _main_loop(self) -> None:
        next_health = time.monotonic() + HEALTH_CHECK_SECONDS
        turn = min(1.0, (self.notifier.watchdog_interval or 1.0) / 2)
        while True:
            try:
                signum = self.signals.get(timeout=turn)
            except queue.Empty:
                signum = None
            if signum in (signal.SIGTERM, signal.SIGINT):
                logger.info("received %s; shutting down", signal.Signals(signum).name)
                self.notifier.stopping()
                return
            if signum == signal.SIGHUP:
                self.reload()
            try:
                self.monitor.tick()
            except Exception:  # a status line must never take the daemon down
                logger.exception("health check failed")
            try:
                self.retention.tick()
            except Exception:  # old history can wait for the next turn
                logger.exception("retention failed")
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + HEALTH_CHECK_SECONDS
                try:
                    self.supervise()
                except Exception:  # the main thread must outlive any one bad check
                    logger.exception("supervision failed; trying again in %.0fs",
                                     HEALTH_CHECK_SECONDS)

    def settle_again(self, path: str) -> None:
        self.intake.put(Hint(path, "recovery"))

    def _put_back(self, record: FileRecord, detail: str) -> None:
        put_back(self.store, record, detail, settle_again=self.settle_again,
                 finalize=self.to_finalize.put)

    def _stop_metrics(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.close()

    def _mark_closed_cleanly(self) -> None:
        try:
            self.store.mark_closed_cleanly()
        except Exception:  # the next start then runs the full integrity check: no harm
            logger.exception("could not record the clean stop")

    def reload(self) -> None:
        """Apply a changed config to new work; a bad one is refused and the old kept."""
        self.notifier.reloading()
        logger.info("SIGHUP: reloading %s", self.config.source)
        try:
            new, changes = prepare_reload(self.config, self.store)
            if new.coordination != self.config.coordination:
                raise ConfigError(["coordination: changes take effect on restart only "
                                   "(the folders' locks and claims depend on it)"])
            self.lock.hold(new)  # an added folder another daemon runs refuses the reload
        except AlreadyRunning as exc:
            logger.error("reload refused; still running with the previous config: %s", exc)
        except ConfigError as exc:
            logger.error("reload refused; still running with the previous config. "
                         "Problems in %s:\n  %s", exc.source or self.config.source,
                         "\n  ".join(exc.errors))
        except Exception:  # whatever went wrong, the running config stays and so do we
            logger.exception("reload failed; still running with the previous config")
        else:
            self.apply(new)
            logger.info("reloaded %s: %s", new.source, "; ".join(changes))
        self.pause_wake.set()  # perhaps the key or an index was fixed: check now
        self.notifier.ready(self.monitor.summary())

    def apply(self, config: Config) -> None:
        """Hand ``config`` to every part; each applies it to work not yet started."""
        self.config = config
        logging.getLogger().setLevel(config.log_level.upper())
        self.api.base_url = config.api.base_url.rstrip("/")
        self.api.timeout = (config.api.connect_timeout_seconds, config.api.io_timeout_seconds)
        self.monitor.stall_seconds = config.stall_seconds
        if self.coordinator is not None:
            self.coordinator.reconfigure(config)
        for thread in [self.scanner, *self.threads.values()]:
            thread.reconfigure(config)
        self.watcher.reconfigure(config)

    def supervise(self) -> None:
        supervise(self)

    def shutdown(self) -> None:
        """Stop intake first, give uploads a grace period, then close the database."""
        stop_threads(self.watcher, self.scanner, list(self.threads.values()),
                     SHUTDOWN_GRACE_SECONDS)
        self.assets.close()
        self._stop_metrics()
        self.api.close()
        if self.coordinator is not None:
            self.coordinator.close()
        self._mark_closed_cleanly()
        self.store.close()
        self.lock.release()
        self.notifier.close()
        logger.info("watcherd stopped")

