"""Backoff and the gate every upload passes through.

A 429 or an outage slows every worker, not just the one that saw it; an auth
or quota error pauses every upload until a periodic check succeeds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from .errors import TransientError, UploadsPaused


def compute_backoff(failures: int, *, base: float = 2.0, cap: float = 300.0,
                    rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter: between half and all of ``base·2^(n-1)``, capped."""
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * 2 ** (failures - 1))
    return ceiling * (0.5 + 0.5 * rng())


class UploadGate:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random, cap: float = 300.0) -> None:
        self._clock = clock
        self._rng = rng
        self._cap = cap
        self._cond = threading.Condition()
        self._not_before = 0.0
        self._failures = 0
        self._wait_reason: str | None = None
        self.paused: UploadsPaused | None = None

    def wait(self, stop: threading.Event, max_wait: float = 1.0) -> bool:
        """True when uploads may go; otherwise waits at most ``max_wait`` and says False."""
        with self._cond:
            delay = self._delay()
            if delay <= 0 and self.paused is None:
                return True
            self._cond.wait(min(max_wait, delay) if self.paused is None else max_wait)
        return False if stop.is_set() else self._delay() <= 0 and self.paused is None

    def _delay(self) -> float:
        return self._not_before - self._clock()

    def note_failure(self, error: TransientError) -> float:
        """Push every upload back; returns the delay chosen."""
        with self._cond:
            self._failures += 1
            delay = error.retry_after
            if delay is None:
                delay = compute_backoff(self._failures, cap=self._cap, rng=self._rng)
            self._not_before = max(self._not_before, self._clock() + delay)
            self._wait_reason = error.describe()
            return delay

    def note_success(self) -> None:
        with self._cond:
            self._failures = 0
            self._wait_reason = None

    def pause(self, error: UploadsPaused) -> bool:
        """Pause every upload; True if this call started the pause."""
        with self._cond:
            started = self.paused is None
            self.paused = error
            return started

    def resume(self) -> None:
        with self._cond:
            self.paused = None
            self._cond.notify_all()

    def snapshot(self, wall_now: float) -> dict[str, object]:
        """For ``watcherd status``: running, paused (why, how to fix) or backing off until."""
        with self._cond:
            if self.paused is not None:
                return {"state": "paused", "reason": self.paused.describe(),
                        "kind": type(self.paused).__name__, "fix": self.paused.fix,
                        "until": None}
            delay = self._delay()
            if delay > 0:
                return {"state": "backing_off", "reason": self._wait_reason, "kind": None,
                        "fix": None, "until": wall_now + delay}
            return {"state": "running", "reason": None, "kind": None, "fix": None,
                    "until": None}

    def describe(self) -> str | None:
        """Why uploads are held back right now, for status lines."""
        with self._cond:
            if self.paused is not None:
                return f"paused: {self.paused.describe()}"
            delay = self._delay()
            if delay > 0:
                return f"backing off {delay:.0f}s after {self._wait_reason}"
            return None
