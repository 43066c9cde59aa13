"""One shape for every long-lived thread.

A ``ServiceThread`` has a name, a stop event and a ``step()`` that blocks for
at most a short timeout, so it re-checks the stop event often. An exception
in ``step()`` is logged with its traceback and the loop goes on after a
pause (supervised in place); ``heartbeat`` tells the main thread the loop is
still turning, which is what a systemd watchdog ping should rely on. Code that
blocks for long inside one step (an upload, a hash, a copy, every API call)
calls ``beat()`` as it makes progress, so "no heartbeat" means "stuck".
A thread that takes files one at a time says which one it holds
(``holding``), so the supervisor can tell a stranded row from a busy one;
the guard here is the last resort, ``putback`` guards each file.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcherd.config import Config

logger = logging.getLogger(__name__)

CRASH_PAUSE_SECONDS = 1.0

_local = threading.local()


def beat() -> None:
    """Mark the calling service thread as making progress (no-op elsewhere)."""
    thread = getattr(_local, "service", None)
    if thread is not None:
        thread.heartbeat = time.monotonic()


class ServiceThread:
    # Composition, not a Thread subclass: subclasses are free to name their
    # methods without shadowing threading.Thread internals (``_target``...).
    def __init__(self, name: str) -> None:
        self.name = name
        self.stop_event = threading.Event()
        self.heartbeat = time.monotonic()
        self.crashes = 0
        self.holding: int | None = None  # the file id this thread works on right now
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def step(self) -> None:
        """One unit of work; must return within a second or so."""
        raise NotImplementedError

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded config for work not yet started (runs on the main thread).

        Swapping one reference is atomic, so no lock: an upload worker resolves
        its file's folder once per file, and the next file sees the new settings.
        """
        if hasattr(self, "config"):
            self.config = config

    def setup(self) -> None:
        """Runs once in the thread before the first step."""

    def teardown(self) -> None:
        """Runs once in the thread after the last step, even after a crash."""

    def run(self) -> None:
        _local.service = self
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

    def next_file(self, work: queue.Queue[int] | queue.SimpleQueue[int]) -> int | None:
        """The next file id from ``work``, or None after half a second without one."""
        try:
            return work.get(timeout=0.5)
        except queue.Empty:
            return None

    @contextmanager
    def hold(self, file_id: int) -> Iterator[int]:
        """Mark ``file_id`` as this thread's while the block runs (the sweep leaves it be)."""
        self.holding = file_id
        try:
            yield file_id
        finally:
            self.holding = None

    def held_files(self) -> set[int]:
        """Files this thread holds (working on, or keeping for later); none once it died."""
        holding = self.holding
        return {holding} if holding is not None and self.is_alive() else set()

    def seconds_since_heartbeat(self) -> float:
        return time.monotonic() - self.heartbeat
