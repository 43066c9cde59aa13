"""Backoff and the gate every upload passes through.

A 429 or an outage slows every worker, not just the one that saw it; an auth
or quota error pauses every upload until a periodic check succeeds.

The delays themselves follow ``watcherd.backoff``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from watcherd.backoff import BACKOFF_CAP, floor_seconds, retry_delay, server_delay
from watcherd.errors import TransientError, UploadsPaused
from watcherd.state.runtime import GateSnapshot
from watcherd.telemetry import NO_TELEMETRY, Telemetry
from watcherd.twelvelabs.ratelimit import UPLOAD_ENDPOINT, RateWindow

logger = logging.getLogger(__name__)

# ("paused", the error) or ("resumed", None).
PauseListener = Callable[[str, UploadsPaused | None], None]


class UploadGate:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random, cap: float = BACKOFF_CAP,
                 window: RateWindow | None = None, telemetry: Telemetry = NO_TELEMETRY) -> None:
        self._clock = clock
        self._telemetry = telemetry
        self._rng = rng
        self._cap = cap
        self._window = window
        self._cond = threading.Condition()
        self._own_until = 0.0      # the backoff watcherd chose; a success clears it
        self._server_until = 0.0   # what the API asked for; stands until it passes
        self._steps = 0            # the backoff exponent (failures without a hint)
        self._short_hints = 0      # hints shorter than the floor, in a row
        # Each counted failure starts a new generation; a failure of a request
        # let through in an older one happened in the same moment as that step.
        self._generation = 0
        self._admitted: dict[int, int] = {}
        self._wait_reason: str | None = None
        self.paused: UploadsPaused | None = None
        # Told when a pause begins and when uploads go again (webhooks): once
        # each, however many workers hit the pause or checks renew it.
        self._listener: PauseListener | None = None
        self._announced = False

    def wait(self, stop: threading.Event, max_wait: float = 1.0) -> bool:
        """True when uploads may go; otherwise waits at most ``max_wait`` and says False."""
        with self._cond:
            if self._delay() <= 0 and self.paused is None:
                return self._admit()
            delay = self._delay()
            self._cond.wait(min(max_wait, delay) if self.paused is None else max_wait)
            if stop.is_set() or self._delay() > 0 or self.paused is not None:
                return False
            return self._admit()

    def _admit(self) -> bool:
        self._admitted[threading.get_ident()] = self._generation
        return True

    def _delay(self) -> float:
        until = max(self._own_until, self._server_until)
        window = self._window.closed_for(UPLOAD_ENDPOINT) if self._window else 0.0
        return max(until - self._clock(), window)

    def note_failure(self, error: TransientError) -> float:
        """Hold every upload back; returns how long uploads now wait."""
        with self._cond:
            now = self._clock()
            hint = error.retry_after
            admitted = self._admitted.pop(threading.get_ident(), self._generation)
            if admitted >= self._generation:
                self._generation += 1
                self._step(now, hint)
            elif hint is not None:  # the same moment: the API's word still counts
                self._server_until = max(self._server_until, now + server_delay(hint, self._rng))
            self._wait_reason = error.describe()
            self._telemetry.retry(error)
            return max(0.0, self._delay())

    def _step(self, now: float, hint: float | None) -> None:
        if hint is None:
            self._steps += 1
            self._own_until = now + retry_delay(None, self._steps, self._rng, self._cap)
            return
        repeats = self._short_hints + 1
        if hint < floor_seconds(repeats, self._cap):
            self._short_hints = repeats
        self._server_until = max(self._server_until,
                                 now + retry_delay(hint, repeats, self._rng, self._cap))

    def note_success(self) -> None:
        """The API works: forget the backoff watcherd chose (not what the API asked for)."""
        with self._cond:
            self._admitted.pop(threading.get_ident(), None)
            self._steps = self._short_hints = 0
            self._own_until = 0.0
            if self._delay() <= 0:
                self._wait_reason = None
            self._cond.notify_all()
            # An upload went through: a pause lifted on trial (quota) is over.
            resumed = self._announced and self.paused is None
            self._announced = self._announced and not resumed
        if resumed:
            self._tell("resumed", None)

    def pause(self, error: UploadsPaused) -> bool:
        """Pause every upload; True if this call started the pause."""
        with self._cond:
            started = self.paused is None
            self.paused = error
            announce, self._announced = not self._announced, True
        if started:
            self._telemetry.pause(type(error).__name__)
        if announce:
            self._tell("paused", error)
        return started

    def resume(self, *, trial: bool = False) -> None:
        """Let uploads go. ``trial``: only to find out whether they can (a quota pause),
        so "resumed" is told when an upload succeeds, not now."""
        with self._cond:
            self.paused = None
            self._cond.notify_all()
            resumed = self._announced and not trial
            self._announced = self._announced and not resumed
        if resumed:
            self._tell("resumed", None)

    def listen(self, listener: PauseListener) -> None:
        """Tell ``listener`` of pauses from now on, and of the one in force, if any."""
        with self._cond:
            self._listener = listener
            paused = self.paused
        if paused is not None:
            self._tell("paused", paused)

    def _tell(self, what: str, error: UploadsPaused | None) -> None:
        # Outside the lock: the listener writes to the database.
        if self._listener is not None:
            self._listener(what, error)

    def snapshot(self, wall_now: float) -> GateSnapshot:
        """For ``watcherd status``: running, paused (why, how to fix) or backing off until."""
        with self._cond:
            if self.paused is not None:
                return {"state": "paused", "reason": self.paused.describe(),
                        "kind": type(self.paused).__name__, "fix": self.paused.fix,
                        "until": None}
            delay = self._delay()
            if delay > 0:
                return {"state": "backing_off", "reason": self._reason(), "kind": None,
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
                return f"backing off {delay:.0f}s after {self._reason()}"
            return None

    def _reason(self) -> str:
        if self._window is not None and self._window.closed_for(UPLOAD_ENDPOINT) > 0:
            return "the API's rate limit for uploads is used up until its reset"
        return self._wait_reason or "an earlier failure"
