"""One shape for every long-lived thread.

A ``ServiceThread`` has a name, a stop event and a ``step()`` that blocks for
at most a short timeout, so it re-checks the stop event often. An exception
in ``step()`` is logged with its traceback and the loop goes on after a
pause (supervised in place); ``heartbeat`` tells the main thread the loop is
still turning, which is what a systemd watchdog ping should rely on.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)

CRASH_PAUSE_SECONDS = 1.0


class ServiceThread:
    # Composition, not a Thread subclass: subclasses are free to name their
    # methods without shadowing threading.Thread internals (``_target``...).
    def __init__(self, name: str) -> None:
        self.name = name
        self.stop_event = threading.Event()
        self.heartbeat = time.monotonic()
        self.crashes = 0
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def step(self) -> None:
        """One unit of work; must return within a second or so."""
        raise NotImplementedError

    def setup(self) -> None:
        """Runs once in the thread before the first step."""

    def teardown(self) -> None:
        """Runs once in the thread after the last step, even after a crash."""

    def run(self) -> None:
        try:
            self.setup()
            while not self.stop_event.is_set():
                self.heartbeat = time.monotonic()
                self._guarded_step()
        finally:
            try:
                self.teardown()
            except Exception:
                logger.exception("%s: teardown failed", self.name)

    def _guarded_step(self) -> None:
        try:
            self.step()
        except Exception:
            self.crashes += 1
            logger.exception("%s: unexpected error (crash #%d); carrying on", self.name,
                             self.crashes)
            self.stop_event.wait(CRASH_PAUSE_SECONDS)

    def stop(self) -> None:
        self.stop_event.set()

    def seconds_since_heartbeat(self) -> float:
        return time.monotonic() - self.heartbeat
