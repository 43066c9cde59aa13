"""Finalize: move a file whose fate is known to done/ or failed/, then its sidecar.

The target path is recorded before the move, so after a crash the next run
can tell "moved but not recorded" from "not moved yet". A storage error
(full disk, read-only share) keeps the row in ``finalizing`` and retries
later; the source is only removed once the copy is complete. An error that
no retry can cure (the filesystem refuses the name: ENAMETOOLONG, EINVAL,
EILSEQ) is one ERROR with the fix, and the file is left alone until the
next start instead of being retried forever. Any other exception is noted
in the file's history and the move retried the same way (``putback``); the
fifth in a row redirects the file to failed/.
"""

from __future__ import annotations

import errno
import heapq
import logging
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from watcherd.backoff import doubling
from watcherd.config import Config, FolderConfig
from watcherd.errors import StorageRefused
from watcherd.ingest.aftermodes import (
    companions,
    metadata_move,
    moves,
    record_anchor,
    remove_source,
)
from watcherd.ingest.mover import free_target, move_file
from watcherd.ingest.putback import InternalErrors, give_up
from watcherd.ingest.sidecar import Sidecar, sidecar_document, write_sidecar
from watcherd.intake.metadata import metadata_file_for
from watcherd.intake.presence import folder_reachable
from watcherd.names import display
from watcherd.state.states import State
from watcherd.state.store import FileRecord, Store
from watcherd.threads import ServiceThread
from watcherd.webhooks.events import FAILED, READY, file_events

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A storage error (full disk, share away) is retried after 5 s, doubling to
# at most 5 min: quick once space is freed, quiet while it is not.
RETRY_FIRST_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0
# The same call with the same name fails the same way, however long we wait.
PERMANENT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ})


class Finalizer(ServiceThread):
    def __init__(self, *, config: Config, store: Store,
                 work: queue.Queue[int] | queue.SimpleQueue[int],
                 clock: Callable[[], float] = time.monotonic,
                 retry_seconds: float = RETRY_FIRST_SECONDS,
                 internal_errors: InternalErrors | None = None) -> None:
        super().__init__("finalizer")
        self.config = config
        self.store = store
        self.work = work
        self.clock = clock
        self.retry_seconds = retry_seconds
        self._later: list[tuple[float, int]] = []
        self._failures: dict[int, int] = {}
        # Files whose name the filesystem refuses for good: parked here (so the
        # sweep leaves them alone) until the next start.
        self._refused_ids: set[int] = set()
        self.internal_errors = internal_errors or InternalErrors()

    def step(self) -> None:
        self._requeue_due()
        file_id = self.next_file(self.work)
        if file_id is None:
            return
        with self.hold(file_id):
            self.internal_errors.run(
                file_id, lambda: self._attempt(file_id),
                put_back=lambda detail: self._note_and_retry(file_id, detail),
                give_up=lambda detail: give_up(self.store, file_id, detail, self.work.put))

    def held_files(self) -> set[int]:
        if not self.is_alive():
            return super().held_files()
        return (super().held_files() | {file_id for _, file_id in list(self._later)}
                | set(self._refused_ids))

    def _attempt(self, file_id: int) -> None:
        try:
            self.finalize(file_id)
        except StorageRefused as exc:
            self._failures.pop(file_id, None)
            self._refused(file_id, exc)
        except OSError as exc:
            delay = self._retry_later(file_id)
            logger.error("%s: cannot move it to done/failed yet (%s); nothing is lost: the "
                         "file stays where it is, retrying in %.0fs",
                         display(self.store.get(file_id).path), exc, delay)
        else:
            self._failures.pop(file_id, None)

    def _refused(self, file_id: int, exc: StorageRefused) -> None:
        """Not retried: the row stays ``finalizing`` (shown by status) until the next start."""
        record = self.store.get(file_id)
        self._refused_ids.add(file_id)
        self.store.note(file_id, f"cannot be moved, retrying cannot help: {exc}")
        logger.error("%s: the filesystem refuses %s: %s. Retrying cannot help; the file stays "
                     "where it is and is tried again at the next start. Fix: give done_dir/"
                     "failed_dir a filesystem that takes this name, or rename the file",
                     display(record.path), display(exc.path), exc)

    def _note_and_retry(self, file_id: int, detail: str) -> None:
        self.store.note(file_id, detail)
        self._retry_later(file_id)

    def _retry_later(self, file_id: int) -> float:
        failures = self._failures.get(file_id, 0) + 1
        self._failures[file_id] = failures
        delay = doubling(failures, self.retry_seconds, RETRY_MAX_SECONDS)
        heapq.heappush(self._later, (self.clock() + delay, file_id))
        return delay

    def _requeue_due(self) -> None:
        now = self.clock()
        while self._later and self._later[0][0] <= now:
            self.work.put(heapq.heappop(self._later)[1])

    def finalize(self, file_id: int) -> None:
        record = self.store.get(file_id)
        if record.state != State.FINALIZING:
            return
        folder = self.config.folder_for(record.path)
        if not moves(record, folder):
            assert folder is not None
            self._finish_in_place(record, folder)
            return
        target = self._target(record, folder)
        source = Path(record.path)
        moved = _permanent_as_refused(self._move, source, target)
        if moved is None and not folder_reachable(record.folder):
            raise FileNotFoundError(f"folder {record.folder} is unreachable; "
                                    f"{display(source.name)} will be moved when it is back")
        if moved is None:
            self.store.transition(file_id, State.VANISHED,
                                  f"file disappeared before it could be moved to {target.parent}",
                                  finished_at=self.store.clock())
            return
        finished = self.store.clock()
        record = self.store.transition(file_id, State.FINALIZING, None, dest_path=str(moved))
        metadata_file = self._move_metadata_file(record, moved, folder)
        original = self.store.get(record.duplicate_of) if record.duplicate_of else None
        document = sidecar_document(record, folder, finished, original,
                                    metadata_file=metadata_file)
        _permanent_as_refused(write_sidecar, moved, document)
        self._finished(record, document, finished, f"moved to {moved}")

    def _finished(self, record: FileRecord, document: Sidecar, finished: float,
                  detail: str) -> None:
        ready = record.outcome == "ready"
        # The webhook event goes to the outbox in the transaction that finishes the row.
        events = file_events(self.config.webhooks, READY if ready else FAILED, dict(document),
                             finished)
        self.store.transition(record.id, State.DONE if ready else State.FAILED, detail,
                              finished_at=finished, events=events)

    def _move_metadata_file(self, record: FileRecord, moved: Path,
                            folder: FolderConfig | None) -> Path | None:
        """The metadata file goes where its video went, named after it."""
        found = metadata_move(record.path, moved, folder)
        if found is None:
            return None
        return _permanent_as_refused(self._move, *found)

    def _finish_in_place(self, record: FileRecord, folder: FolderConfig) -> None:
        """``after: leave`` or ``delete`` (``aftermodes``): the record first, in records_dir."""
        finished = self.store.clock()
        kept = folder.after == "leave"
        record = self.store.transition(record.id, State.FINALIZING, None,
                                       dest_path=record.path if kept else None)
        anchor = record_anchor(record, folder)
        anchor.parent.mkdir(parents=True, exist_ok=True)
        original = self.store.get(record.duplicate_of) if record.duplicate_of else None
        beside = Path(metadata_file_for(record.path, folder))
        document = sidecar_document(
            record, folder, finished, original,
            metadata_file=beside if kept and os.path.lexists(beside) else None)
        written = _permanent_as_refused(write_sidecar, anchor, document)
        if not kept:
            remove_source(record, folder)  # only now: ready, and its record on disk
        how = "left in place" if kept else "deleted once ready"
        self._finished(record, document, finished, f"{how}; its record: {written}")

    def _target(self, record: FileRecord, folder: FolderConfig | None) -> Path:
        """The recorded target, or a fresh free one recorded before moving."""
        if record.dest_path:
            return Path(record.dest_path)
        base = Path(record.folder)
        if folder is not None:
            base_dir = folder.done_dir if record.outcome == "ready" else folder.failed_dir
        else:  # folder removed from the config: keep the default layout
            base_dir = base / ("done" if record.outcome == "ready" else "failed")
        relative = Path(record.path).relative_to(base).parent
        target = free_target(base_dir / relative, Path(record.path).name,
                             companions(record, folder))
        self.store.update(record.id, dest_path=str(target))
        return target

    @staticmethod
    def _move(source: Path, target: Path) -> Path | None:
        """Move, tolerating a move that already happened before a crash."""
        source_exists = os.path.lexists(source)
        if os.path.lexists(target):
            if not source_exists:
                return target
            if os.path.samefile(source, target):  # linked, not yet unlinked
                os.unlink(source)
                return target
        if not source_exists:
            return None
        return move_file(source, target)


def _permanent_as_refused(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, with an OSError that no retry can cure raised as StorageRefused."""
    try:
        return call(*args)
    except OSError as exc:
        if exc.errno in PERMANENT_ERRNOS:
            raise StorageRefused(os.fsdecode(exc.filename2 or exc.filename or args[0]),
                                 exc) from exc
        raise
