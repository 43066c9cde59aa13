"""Per-index upload pauses: an index that disappears stops only its own folders.

When an index is deleted, Twelve Labs answers ``resource_not_exist`` to every
upload into it. Failing each file in turn would empty the inbox into failed/
for a problem that is not the files'. Instead the folders using that index
pause: their files stay in the inbox (still ``queued``, parked here rather
than cycling through the upload queue), every other folder goes on, and the
pause check lifts the pause once ``GET /indexes/{id}`` answers again. An
unknown index at start stays a configuration error (preflight).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from watcherd.config import Config
from watcherd.errors import ApiError, ApiRejected
from watcherd.telemetry import NO_TELEMETRY, Telemetry
from watcherd.twelvelabs.client import TwelveLabsClient

logger = logging.getLogger(__name__)

NOT_FOUND_CODE = "resource_not_exist"


def says_not_found(error: ApiError) -> bool:
    return error.status == 404 or error.code == NOT_FOUND_CODE


def index_gone(api: TwelveLabsClient, index_id: str, error: ApiError) -> bool:
    """True if ``error`` may be about the index and ``GET /indexes/{id}`` says it is gone.

    The error alone is not enough (a task or video can be "not found" too);
    the index's own answer decides. Transport and auth errors of that check
    propagate: the caller cannot tell yet and must not fail the file on a guess.
    """
    if not says_not_found(error):
        return False
    return index_missing(api, index_id)


def index_missing(api: TwelveLabsClient, index_id: str) -> bool:
    try:
        api.get_index(index_id)
    except ApiRejected as exc:
        return says_not_found(exc)
    return False


class IndexPauses:
    """Which indexes are gone (and why), and the queued files parked until they return."""

    def __init__(self, config: Callable[[], Config], telemetry: Telemetry = NO_TELEMETRY) -> None:
        self._config = config  # read when a message is made: names follow a reload
        self._telemetry = telemetry
        self._lock = threading.Lock()
        self._gone: dict[str, str] = {}
        self._parked: set[int] = set()
        # Told ("paused", index, why) and ("resumed", index, None) (webhooks).
        self.listener: Callable[[str, str, str | None], None] | None = None

    def pause(self, index_id: str, error: ApiError) -> bool:
        """Pause every folder using ``index_id``; True (and an ERROR) if this started it."""
        with self._lock:
            started = index_id not in self._gone
            self._gone[index_id] = error.describe()
        if started:
            logger.error("%s", self.message(index_id))
            self._telemetry.pause("IndexGone")
            self._tell("paused", index_id, error.describe())
        return started

    def resume(self, index_id: str) -> list[int]:
        """Lift the pause; returns every parked file (those still paused park again)."""
        with self._lock:
            was_paused = self._gone.pop(index_id, None) is not None
            parked, self._parked = sorted(self._parked), set()
        if was_paused:
            self._tell("resumed", index_id, None)
        return parked

    def _tell(self, what: str, index_id: str, why: str | None) -> None:
        if self.listener is not None:
            self.listener(what, index_id, why)

    def why(self, index_id: str) -> str | None:
        with self._lock:
            return self._gone.get(index_id)

    def paused(self) -> dict[str, str]:
        with self._lock:
            return dict(self._gone)

    def park_if_paused(self, index_id: str, file_id: int) -> bool:
        """Keep ``file_id`` here if its index is paused (atomic with ``resume``)."""
        with self._lock:
            if index_id not in self._gone:
                return False
            self._parked.add(file_id)
            return True

    def parked(self) -> set[int]:
        with self._lock:
            return set(self._parked)

    def message(self, index_id: str) -> str:
        """The ERROR line: which config key, what Twelve Labs said, what to do."""
        keys = [f"{key}.index_id" for key in self._config().folder_keys_by_index().get(
            index_id, [])]
        where = ", ".join(keys) or f"index_id {index_id}"
        return (f"{where}: index {index_id} no longer exists at Twelve Labs "
                f"({self.why(index_id) or 'not found'}); uploads from "
                f"{'that folder' if len(keys) <= 1 else 'those folders'} are paused and its "
                f"files stay in the inbox, other folders go on. Fix: recreate the index, or "
                f"set {where} to an existing index and reload (systemctl reload watcherd); "
                "uploads resume by themselves once the index answers")

    def describe(self) -> str | None:
        """For the status line: how many indexes hold their folders back."""
        gone = self.paused()
        if not gone:
            return None
        return f"paused for index {', '.join(sorted(gone))} (gone)"
