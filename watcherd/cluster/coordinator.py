"""This daemon's side of the cluster: its claims, the fence before each side effect.

The ingest threads ask it, with the file's local row, before each step that
changes anything outside this host: ``claim`` before the file is validated,
``begin_upload`` before the POST (fence, plus the cluster-wide dedupe
check), ``record`` after each answer and before the move, ``fence`` before
the sidecar. A refused fence raises ``ClaimLost``: the caller stands down.
While PostgreSQL does not answer every call raises
``CoordinationUnavailable``: nothing new is claimed and no fenced side
effect happens, and the callers wait. The ingest threads share one
connection; the lease thread has its own (``connection.Connection``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from watcherd.cluster.claims import Claim
from watcherd.cluster.connection import Connection
from watcherd.cluster.schema import migrate
from watcherd.cluster.share import Shares
from watcherd.config import Config
from watcherd.errors import ClaimLost, CoordinationUnavailable
from watcherd.names import display
from watcherd.state.instance import AlreadyRunning
from watcherd.state.schema import FileRecord

logger = logging.getLogger(__name__)

# A side effect needing more than this share of the lease since the last
# renewal is stopped locally, before PostgreSQL is even asked (SIGSTOP, GC).
LAPSE_SHARE = 0.8


@dataclass(frozen=True)
class Verdict:
    """What ``claim`` found: ``new``, ``mine`` (ours already), ``taken`` (over, from
    ``claim.previous``), ``elsewhere`` (another host's, alive) or ``finished`` (by a host
    moments ago: the file is about to go)."""

    kind: str
    claim: Claim


class Coordinator:
    def __init__(self, config: Config, dsn: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        assert config.coordination is not None
        self.settings = config.coordination
        self.config = config
        self.owner = self.settings.host_name
        self.instance = uuid.uuid4().hex
        self.clock = clock
        self.db = Connection(self.settings, dsn)
        # The lease thread's own: a worker's transaction never delays a renewal.
        self.lease_db = Connection(self.settings, dsn)
        self.shares = Shares(config.folders)
        self.started = False
        self._held: dict[int, Claim] = {}  # local file id -> the claim we hold for it
        self._held_lock = threading.Lock()
        self.renewed_at = clock()

    # -- start and stop ----------------------------------------------------------

    def start(self) -> bool:
        """Create or migrate the schema and enter this host; False while PostgreSQL is away
        (the lease thread tries again). AlreadyRunning if a live daemon has our name."""
        if self.started:
            return True
        try:
            with self.lease_db.use() as book:
                migrate(book.conn, self.settings.schema)
                place = f"{socket.gethostname()}:{self.config.state_db}"
                if not book.register(self.instance, os.getpid(), place):
                    raise AlreadyRunning(
                        f"coordination.host_name: another live watcherd calls itself "
                        f"{self.owner!r} in PostgreSQL schema {self.settings.schema}; give "
                        "each daemon its own host_name")
        except CoordinationUnavailable:
            return False
        self.started = True
        logger.info("coordinated as host %s (PostgreSQL schema %s, lease %gs)", self.owner,
                    self.settings.schema, self.settings.lease_seconds)
        return True

    def close(self) -> None:
        """A clean stop: our open claims may be taken over at once; we are stopped."""
        try:
            if self.started:
                with self.lease_db.use() as book:
                    released = book.let_go()
                    book.host_beat(self.instance, "stopped", None)
                if released:
                    logger.info("released %d claim(s) for the other hosts", released)
        except CoordinationUnavailable:
            logger.warning("could not release our claims; the other hosts take them over "
                           "once their lease (%gs) runs out", self.settings.lease_seconds)
        finally:
            logger.info("PostgreSQL this run: %d statements in %.0f ms for the files' steps, "
                        "%d for leases and heartbeats", self.db.round_trips,
                        1000 * self.db.seconds, self.lease_db.round_trips)
            self.db.close()
            self.lease_db.close()

    def reconfigure(self, config: Config) -> None:
        """A reload: new folders get their id (marker); the coordination settings
        themselves change only on restart."""
        self.shares.add(config.folders)
        self.config = config

    # -- the ingest threads' questions ---------------------------------------

    def claim(self, record: FileRecord) -> Verdict:
        """Claim ``record``'s file for this host, or say whose it is."""
        if not self.started:
            raise CoordinationUnavailable("not registered with PostgreSQL yet")
        if self.lease_db.down is not None:  # the lease thread says when it answers again
            raise CoordinationUnavailable(self.lease_db.down)
        key = self.shares.identity(self._folder(record), record)
        with self.db.use() as book:
            fresh = book.insert(key, record.index_id)
            if fresh is not None:
                return self._hold(record, Verdict("new", fresh))
            found = book.get(key)
            if (found is not None and not found.final and found.owner != self.owner
                    and found.expired):
                taken = book.take(found.id)
                if taken is not None:
                    logger.warning("%s: took the claim over from host %s (its lease ran out; "
                                   "takeover %d, epoch %d)", display(record.path),
                                   taken.previous, taken.takeovers, taken.epoch)
                    return self._hold(record, Verdict("taken", taken))
                found = book.get(key)
            if found is not None and found.final and self._left_in_place(record):
                return Verdict("elsewhere", found)  # finished and left there on purpose
            if found is not None and found.final and book.reopen(found.id):
                logger.info("%s: finished by host %s before, and back in the inbox: "
                            "claimed afresh", display(record.path), found.owner)
                found = None
            if found is None:  # gone in between: claim it afresh
                fresh = book.insert(key, record.index_id)
                if fresh is None:
                    raise CoordinationUnavailable("the claim changed while being read")
                return self._hold(record, Verdict("new", fresh))
            if found.final:
                return Verdict("finished", found)
            if found.owner == self.owner:
                renewed = book.record(found) or found
                return self._hold(record, Verdict("mine", renewed))
            return Verdict("elsewhere", found)

    def record(self, record: FileRecord, step: str, **values: Any) -> Claim:
        """Renew our claim and write ``values``; ClaimLost if it is not ours any more."""
        held = self._claim_of(record, step)
        if values.get("dest_path") is not None:  # the same on every host's mount
            values["dest_path"] = os.path.relpath(values["dest_path"], self._folder(record).path)
        with self.db.use() as book:
            updated = book.record(held, **values)
            if updated is None:
                self._forget(record.id)
                current = book.get(self.shares.identity(self._folder(record), record))
                raise ClaimLost(record.path, step, current.owner if current else None)
        self._keep(record.id, updated)
        return updated

    def fence(self, record: FileRecord, step: str) -> Claim:
        """Before a side effect: is the claim still ours (the epoch we hold)?"""
        if self.lease_lapsed():
            logger.warning("%s: %.0fs since the last lease renewal; asking PostgreSQL before "
                           "%s", display(record.path), self.clock() - self.renewed_at, step)
        return self.record(record, step)

    def begin_upload(self, record: FileRecord, *, sha256: str, index_id: str,
                     dedupe: bool, started_at: float) -> tuple[str, Claim]:
        """The fence before the POST: ("upload", ours), ("join", the claim holding the
        same content in this index) or ("adopt", ours: a task was handed over to it)."""
        held = self._claim_of(record, "the upload")
        if not dedupe:
            return self._start_upload(record, sha256, index_id, started_at)
        # The content check and our intent in one short transaction, under a lock
        # per content: of two hosts with one content, the second sees the first.
        with self.db.use() as book, book.conn.transaction():
            book.round_trips += 2  # BEGIN and COMMIT
            book.content_lock(sha256, index_id)
            holder = book.content_holder(held, sha256, index_id)
            if holder is not None:
                return "join", self.record(record, "the upload", sha256=sha256)
            return self._start_upload(record, sha256, index_id, started_at)

    def _start_upload(self, record: FileRecord, sha256: str, index_id: str,
                      started_at: float) -> tuple[str, Claim]:
        """The fence and the intent in one statement; a task handed over meanwhile by a
        stale owner is adopted instead of uploading again."""
        updated = self.record(record, "the upload", sha256=sha256, index_id=index_id,
                              phase="uploading", upload_started_at=started_at)
        return ("adopt" if updated.task_id is not None else "upload"), updated

    def content_holder(self, record: FileRecord, sha256: str, index_id: str) -> Claim | None:
        held = self._claim_of(record, "the upload")
        with self.db.use() as book:
            return book.content_holder(held, sha256, index_id)

    def hand_over_task(self, record: FileRecord, task_id: str, video_id: str | None) -> None:
        """A stale owner's POST answered after all: give its task to the claim, if the
        new owner has none yet, so it adopts the task instead of uploading again."""
        key = self.shares.identity(self._folder(record), record)
        with self.db.use() as book:
            owner = book.hand_over(key, task_id, video_id)
        if owner is None:
            logger.warning("%s: task %s was created after our claim lapsed, and the claim "
                           "already has a task: a possible duplicate", display(record.path),
                           task_id)
        else:
            logger.warning("%s: task %s was created after our claim lapsed; handed it to "
                           "host %s, which adopts it", display(record.path), task_id, owner)

    def finish(self, record: FileRecord, phase: str, **values: Any) -> None:
        """The file is done here (``done``/``failed``): close its claim, stop renewing it."""
        try:
            self.record(record, f"closing the claim ({phase})", phase=phase, **values)
        finally:
            self._forget(record.id)

    def drop(self, record: FileRecord) -> None:
        """The file changed: the claim of its old size and mtime is void. Deleted if it
        never reached the API, else closed (its remote ids stay on record)."""
        held = self._claim_of(record, "dropping the claim")
        with self.db.use() as book:
            dropped = book.drop(held)
        if not dropped:
            self.finish(record, "failed", reason="the file changed after its upload began")
        self._forget(record.id)

    def stand_down(self, record: FileRecord, exc: ClaimLost) -> str:
        self._forget(record.id)
        detail = f"stood down: {exc}"
        logger.warning("%s: %s", display(record.path), detail)
        return detail

    def lease_lapsed(self) -> bool:
        """Locally: has it been too long since our leases were last renewed?"""
        return self.clock() - self.renewed_at > LAPSE_SHARE * self.settings.lease_seconds

    def describe(self) -> str | None:
        """Why claiming is held back, for STATUS= and status lines."""
        down = self.db.down or self.lease_db.down
        if down is not None:
            return f"paused: PostgreSQL does not answer ({down}), nothing new is claimed"
        return None

    # -- the lease thread's side -------------------------------------------------

    def renewed(self, ours: dict[int, int]) -> list[Claim]:
        """After a renewal: the claims we hold that another host took meanwhile."""
        self.renewed_at = self.clock()
        with self._held_lock:
            return [claim for claim in self._held.values() if ours.get(claim.id) != claim.epoch]

    # -- helpers ---------------------------------------------------------------

    def _folder(self, record: FileRecord) -> Any:
        folder = self.config.folder_for(record.path)
        if folder is None or folder.path not in self.shares.by_path:
            raise ValueError(f"{record.path} is in no coordinated folder")
        return folder

    def _left_in_place(self, record: FileRecord) -> bool:
        """``after: leave``: a finished file stays in the inbox; it is no new drop."""
        return self._folder(record).after == "leave"

    def _claim_of(self, record: FileRecord, step: str) -> Claim:
        with self._held_lock:
            held = self._held.get(record.id)
        if held is not None:
            return held
        # Not claimed in this run (a restart): ours only if the claim still names us.
        key = self.shares.identity(self._folder(record), record)
        with self.db.use() as book:
            found = book.get(key)
        if found is None or found.owner != self.owner:
            raise ClaimLost(record.path, step, found.owner if found else None)
        self._keep(record.id, found)
        return found

    def _hold(self, record: FileRecord, verdict: Verdict) -> Verdict:
        self._keep(record.id, verdict.claim)
        return verdict

    def _keep(self, file_id: int, claim: Claim) -> None:
        with self._held_lock:
            self._held[file_id] = claim

    def _forget(self, file_id: int) -> Claim | None:
        with self._held_lock:
            return self._held.pop(file_id, None)

    def held_count(self) -> int:
        with self._held_lock:
            return len(self._held)
