"""Say why uploads are paused, and lift each pause by itself once the cause is gone.

Pauses come in two kinds. The whole account (``UploadGate.paused``): a key
that is refused or cannot be read is checked cheaply (``GET /indexes/{id}``
for every configured index) every ``pause_check_seconds``; no endpoint
reports remaining credit, so for a quota pause the check is simply the next
upload, tried ten times less often. One index (``IndexPauses``): its folders
wait until ``GET /indexes/{id}`` answers again. One upload path (``UploadPaths``):
multipart refused or ``POST /tasks`` gone; the files that no allowed path takes
wait until a side-effect-free question says the path is open again.

This thread is the one voice of a pause: CRITICAL (key) or ERROR (other)
when it begins and again after each failed check, with the fix, so the
journal says it once per interval rather than once per file. A SIGHUP asks
for a check at once (``wake``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from watcherd.config import Config
from watcherd.errors import (
    ApiError,
    ApiRejected,
    AuthError,
    KeyUnavailable,
    QuotaError,
    UploadsPaused,
)
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses, says_not_found
from watcherd.ingest.method import UploadPaths, multipart_allowed
from watcherd.threads import ServiceThread
from watcherd.twelvelabs.apikey import key_source
from watcherd.twelvelabs.client import TwelveLabsClient

logger = logging.getLogger(__name__)

QUOTA_CHECK_FACTOR = 10


class PauseCheck(ServiceThread):
    def __init__(self, *, config: Config, api: TwelveLabsClient, gate: UploadGate,
                 index_pauses: IndexPauses | None = None,
                 paths: UploadPaths | None = None,
                 release: Callable[[int], None] | None = None,
                 wake: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("pause-check")
        self.config = config
        self.api = api
        self.gate = gate
        self.index_pauses = index_pauses or IndexPauses(lambda: self.config)
        self.paths = paths or UploadPaths(lambda: self.config)
        self.release = release or (lambda _file_id: None)
        self.wake = wake or threading.Event()
        self.clock = clock
        self._next: float | None = None
        self._next_index: float | None = None
        self._next_paths: float | None = None

    def step(self) -> None:
        now = self.wake.wait(0.5)
        if now:
            self.wake.clear()
        if not self.stop_event.is_set():
            self.check(now=now)

    def check(self, now: bool = False) -> None:
        """Check whatever is due (everything, if ``now``)."""
        self._check_account(now)
        self._check_indexes(now)
        self._check_paths(now)

    # -- the account ---------------------------------------------------------

    def _check_account(self, now: bool) -> None:
        paused = self.gate.paused
        if paused is None:
            self._next = None
            return
        if self._next is None:  # the pause just began
            self._next = self.clock() + self.interval(paused)
            self._say_paused(paused, "uploads paused")
            if not now:
                return
        if not now and self.clock() < self._next:
            return
        self._next = self.clock() + self.interval(paused)
        if isinstance(paused, QuotaError):
            logger.info("trying uploads again to see whether the account has credit")
            self.gate.resume(trial=True)
            return
        try:
            self._ask_every_index()
        except UploadsPaused as exc:
            self.gate.pause(exc)  # keep the newest reason (e.g. refused → unreadable)
            self._say_paused(exc, "uploads still paused")
            return
        except Exception as exc:  # noqa: BLE001 (API unreachable: cannot tell, stay paused)
            detail = exc.describe() if isinstance(exc, ApiError) else str(exc)
            logger.warning("cannot check whether uploads may resume (%s); next check in "
                           "%.0fs", detail, self.interval(paused))
            return
        logger.info("Twelve Labs accepts our requests again; resuming uploads")
        self.gate.resume()

    def _ask_every_index(self) -> None:
        """Any answer about an index proves the key; a vanished one pauses only its folders."""
        for index_id in sorted({f.index_id for f in self.config.folders}):
            try:
                self.api.get_index(index_id)
            except ApiRejected as exc:
                if not says_not_found(exc):
                    raise
                self.index_pauses.pause(index_id, exc)

    def _say_paused(self, paused: UploadsPaused, what: str) -> None:
        level = logging.CRITICAL if isinstance(paused, AuthError) else logging.ERROR
        logger.log(level, "%s: %s. Files stay in the inbox. Fix: %s (next check in %.0fs)",
                   what, self.why(paused), paused.fix, self.interval(paused))

    def why(self, paused: UploadsPaused) -> str:
        if isinstance(paused, AuthError) and not isinstance(paused, KeyUnavailable):
            return (f"Twelve Labs refused the API key from "
                    f"{key_source(self.config.api.key_file)} ({paused.describe()})")
        return paused.describe()

    def interval(self, paused: UploadsPaused) -> float:
        factor = QUOTA_CHECK_FACTOR if isinstance(paused, QuotaError) else 1
        return self.config.pause_check_seconds * factor

    # -- single indexes ------------------------------------------------------

    def _check_indexes(self, now: bool) -> None:
        gone = self.index_pauses.paused()
        if not gone:
            self._next_index = None
            return
        if self._next_index is None:  # just learnt: asking again at once would tell nothing
            self._next_index = self.clock() + self.config.pause_check_seconds
            return
        if (not now and self.clock() < self._next_index) or self.gate.paused is not None:
            return  # while the account is paused its own check asks every index
        self._next_index = self.clock() + self.config.pause_check_seconds
        used = {f.index_id for f in self.config.folders}
        for index_id in sorted(gone):
            if index_id in used and self._still_gone(index_id):
                continue
            logger.info("index %s answers again (or is no longer used); resuming its "
                        "folders' uploads", index_id)
            for file_id in self.index_pauses.resume(index_id):
                self.release(file_id)

    def _still_gone(self, index_id: str) -> bool:
        try:
            self.api.get_index(index_id)
        except UploadsPaused as exc:
            self.gate.pause(exc)
            return True
        except ApiError as exc:
            if isinstance(exc, ApiRejected) and says_not_found(exc):
                logger.error("still paused: %s (next check in %.0fs)",
                             self.index_pauses.message(index_id),
                             self.config.pause_check_seconds)
                return True
            logger.warning("cannot check index %s (%s); next check in %.0fs", index_id,
                           exc.describe(), self.config.pause_check_seconds)
            return True
        return False

    # -- upload paths --------------------------------------------------------

    def _check_paths(self, now: bool) -> None:
        refused, removed = self.paths.multipart_refused(), self.paths.tasks_removed()
        if not (refused or removed):
            self._next_paths = None
            return
        if self._next_paths is None:  # just learnt: asking again at once would tell nothing
            self._next_paths = self.clock() + self.config.pause_check_seconds
            return
        if (not now and self.clock() < self._next_paths) or self.gate.paused is not None:
            return
        self._next_paths = self.clock() + self.config.pause_check_seconds
        try:
            if refused and multipart_allowed(self.api):
                self._release(self.paths.reopen_multipart())
            if removed and self.config.folders and \
                    self.api.tasks_endpoint_answers(self.config.folders[0].index_id):
                self._release(self.paths.reopen_tasks())
            elif removed:
                self.paths.say_tasks_removed()
        except UploadsPaused as exc:
            self.gate.pause(exc)
        except ApiError as exc:
            logger.warning("cannot check whether an upload path is open again (%s); next "
                           "check in %.0fs", exc.describe(), self.config.pause_check_seconds)

    def _release(self, file_ids: list[int]) -> None:
        for file_id in file_ids:
            self.release(file_id)
