"""Pause and resume events: the gate and the index pauses tell, this writes the outbox.

A pause lives in memory (it is found again after a restart), so the event
is written the moment the gate or ``IndexPauses`` says it changed. A failed
write is logged and never reaches the thread that hit the pause: telling
must not stop an upload worker or the pause check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from watcherd.config import Config
from watcherd.errors import UploadsPaused
from watcherd.state.outbox import Outbox
from watcherd.state.store import Store
from watcherd.webhooks.events import pause_events

logger = logging.getLogger(__name__)


class PauseEvents:
    def __init__(self, store: Store, config: Callable[[], Config]) -> None:
        self.outbox = Outbox(store)
        self.store = store
        self._config = config  # read per event: receivers follow a reload

    def account(self, what: str, error: UploadsPaused | None) -> None:
        """``UploadGate.listen``: every upload paused or going again."""
        pause: dict[str, Any] = {"scope": "account", "index_id": None,
                                 "reason": None, "kind": None, "fix": None}
        if error is not None:
            pause.update(reason=error.describe(), kind=type(error).__name__, fix=error.fix)
        self._write(what, pause)

    def index(self, what: str, index_id: str, why: str | None) -> None:
        """``IndexPauses.listener``: one index's folders paused (it is gone) or going again."""
        self._write(what, {"scope": "index", "index_id": index_id, "reason": why,
                           "kind": "IndexGone" if what == "paused" else None, "fix": None})

    def _write(self, what: str, pause: dict[str, Any]) -> None:
        try:
            self.outbox.add(pause_events(self._config().webhooks, what, pause,
                                         self.store.clock()))
        except Exception:
            logger.exception("could not record the webhook event for uploads %s", what)
