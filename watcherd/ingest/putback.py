"""Every file a thread takes is either finished or put back where it will be retried.

An exception nobody planned for (a bug, a library surprise) must not strand a
file in ``validating``, ``uploading`` or ``finalizing`` while the watchdog
keeps pinging. The guard around each step records the error in the file's
history and puts the file back; the fifth internal error in a row on one
file sends it to failed/ (``internal_error``), so a file that reliably trips
a bug cannot loop for ever. The traceback goes to the log only: a sidecar is
for the operator, not for our stack frames.

A sweep on the main thread catches whatever even the guard missed (a thread
killed mid-step, a put-back that failed itself): an in-progress row that no
queue or thread holds, seen so twice in a row and unchanged, is put back.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from watcherd.state.schema import FileRecord
from watcherd.state.states import FINAL_STATES, State
from watcherd.state.store import StaleState, Store

logger = logging.getLogger(__name__)

INTERNAL_ERROR_LIMIT = 5
INTERNAL_ERROR_CODE = "internal_error"
# Rows a thread or queue must hold while they are in these states; settling
# rows belong to the settler and are found again by every rescan, indexing
# rows are read from the database by the poller on every turn.
SWEPT_STATES = (State.QUEUED, State.VALIDATING, State.UPLOADING, State.FINALIZING)


def put_back(store: Store, record: FileRecord, detail: str, *,
             settle_again: Callable[[str], None], finalize: Callable[[int], None]) -> None:
    """Return ``record`` to the step that retries it (restart, crash guard and sweep).

    Before the upload a file settles again (validated and hashed afresh, and
    the adoption check runs first if an attempt may have reached the API);
    an upload that got its task id is followed by the poller; a file being
    moved is moved again.
    """
    try:
        if record.state == State.UPLOADING and record.task_id:
            store.transition(record.id, State.INDEXING, f"{detail}: task already created",
                             expect=(record.state,))
        elif record.state in (State.QUEUED, State.VALIDATING, State.UPLOADING):
            store.transition(record.id, State.SETTLING, f"{detail}: settling again",
                             expect=(record.state,))
            settle_again(record.path)
        elif record.state == State.FINALIZING:
            store.note(record.id, detail)
            finalize(record.id)
        elif record.state not in FINAL_STATES:  # settling, indexing: their thread rereads
            store.note(record.id, detail)
    except StaleState:
        pass  # another thread moved it meanwhile, so it is not stranded


def give_up(store: Store, file_id: int, detail: str, finalize: Callable[[int], None]) -> None:
    """Send the file to failed/ with ``internal_error``; the log has the tracebacks."""
    record = store.get(file_id)
    if record.state in FINAL_STATES:
        return
    reason = (f"watcherd hit {INTERNAL_ERROR_LIMIT} internal errors in a row while handling "
              f"this file (last: {detail}); the tracebacks are in the log")
    moved = record.dest_path is not None and not os.path.lexists(record.path)
    if moved:  # already in done/: only the sidecar is missing, keep finishing it
        store.note(file_id, reason)
    else:
        store.transition(file_id, State.FINALIZING, reason, outcome="failed", reason=reason,
                         error_code=INTERNAL_ERROR_CODE, rule=None, dest_path=None)
    finalize(file_id)


class InternalErrors:
    """Counts unplanned exceptions per file, across threads; a clean step resets the count."""

    def __init__(self, limit: int = INTERNAL_ERROR_LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}

    def run(self, file_id: int, action: Callable[[], None], *,
            put_back: Callable[[str], None], give_up: Callable[[str], None]) -> bool:
        """Run ``action`` for ``file_id``; on an unplanned exception put the file back,
        or give up on it after ``limit`` in a row. True if ``action`` ran cleanly."""
        try:
            action()
        except Exception as exc:  # the point: whatever it was, the file is not dropped
            count = self._note(file_id)
            detail = (f"internal error {count} of {self.limit} in "
                      f"{threading.current_thread().name}: {type(exc).__name__}: {exc}")
            logger.exception("file %d: %s", file_id, detail)
            if count >= self.limit:
                self.forget(file_id)
                give_up(detail)
            else:
                put_back(detail)
            return False
        self.forget(file_id)
        return True

    def count(self, file_id: int) -> int:
        with self._lock:
            return self._counts.get(file_id, 0)

    def forget(self, file_id: int) -> None:
        with self._lock:
            self._counts.pop(file_id, None)

    def _note(self, file_id: int) -> int:
        with self._lock:
            self._counts[file_id] = self._counts.get(file_id, 0) + 1
            return self._counts[file_id]


class Sweep:
    """Put back in-progress rows that no queue or thread holds.

    A row is only taken when two sweeps in a row saw it unheld with the same
    ``updated_at``: a file in transit between a queue and a thread is unheld
    for a moment, but never for a whole sweep interval without changing.
    """

    def __init__(self, store: Store, held: Callable[[], set[int]],
                 put_back: Callable[[FileRecord, str], None]) -> None:
        self.store = store
        self.held = held
        self.put_back = put_back
        self._suspects: dict[int, float] = {}

    def run(self) -> list[FileRecord]:
        rows = self.store.in_states(*SWEPT_STATES)
        held = self.held()  # after the rows: a row queued in between counts as held
        unheld = {r.id: r.updated_at for r in rows if r.id not in held}
        orphans = [r for r in rows if r.id in unheld and self._suspects.get(r.id) == r.updated_at]
        taken = {r.id for r in orphans}
        self._suspects = {i: at for i, at in unheld.items() if i not in taken}
        for record in orphans:
            logger.error("%s: %s but no thread holds it; putting it back", record.path,
                         record.state)
            self.put_back(record, f"found stranded in {record.state} by the supervisor")
        return orphans
