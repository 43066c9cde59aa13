"""Lift an upload pause by itself once the account works again.

A bad key is checked cheaply (``GET /indexes/{id}`` for every configured
index). No endpoint reports remaining credit, so for a quota pause the check
is simply the next upload, tried ten times less often.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .api import TwelveLabsClient
from .config import Config
from .errors import ApiError, QuotaError, UploadsPaused
from .retry import UploadGate
from .threads import ServiceThread

logger = logging.getLogger(__name__)

QUOTA_CHECK_FACTOR = 10


class PauseCheck(ServiceThread):
    def __init__(self, *, config: Config, api: TwelveLabsClient, gate: UploadGate,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("pause-check")
        self.config = config
        self.api = api
        self.gate = gate
        self.clock = clock
        self._next: float | None = None

    def step(self) -> None:
        self.stop_event.wait(0.5)
        self.check()

    def check(self) -> None:
        paused = self.gate.paused
        if paused is None:
            self._next = None
            return
        now = self.clock()
        if self._next is None:  # the pause just began
            self._next = now + self.interval(paused)
            return
        if now < self._next:
            return
        self._next = now + self.interval(paused)
        if isinstance(paused, QuotaError):
            logger.info("trying uploads again to see whether the account has credit")
            self.gate.resume()
            return
        try:
            for index_id in sorted({f.index_id for f in self.config.folders}):
                self.api.get_index(index_id)
        except Exception as exc:  # any failure: stay paused, say so again
            detail = exc.describe() if isinstance(exc, ApiError) else str(exc)
            logger.error("uploads still paused: %s. Fix: %s (next check in %.0fs)",
                         detail, paused.fix, self.interval(paused))
            return
        logger.info("Twelve Labs accepts our requests again; resuming uploads")
        self.gate.resume()

    def interval(self, paused: UploadsPaused) -> float:
        factor = QUOTA_CHECK_FACTOR if isinstance(paused, QuotaError) else 1
        return self.config.pause_check_seconds * factor
