"""The lease thread: renew our claims, say we are alive, take over the dead's.

Every ``heartbeat`` (a third of the lease unless set): one statement renews
every open claim of ours, and tells which of the claims we hold another host
took meanwhile (their files are left to it: the next fence stands down); one
updates our host row for ``watcherd status``; one takes over a few claims
whose owner stopped renewing (``FOR UPDATE SKIP LOCKED``: never one another
host is taking), each handed to ``adopt`` to continue where its owner was.
While PostgreSQL is away it retries every second and nothing is claimed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from watcherd.cluster.claims import Claim
from watcherd.cluster.coordinator import Coordinator
from watcherd.errors import CoordinationUnavailable
from watcherd.names import display
from watcherd.threads import ServiceThread, beat

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class LeaseKeeper(ServiceThread):
    def __init__(self, coordinator: Coordinator, adopt: Callable[[Claim, Path], None], *,
                 take_per_beat: int, state: Callable[[], str] = lambda: "running") -> None:
        super().__init__("cluster")
        self.coordinator = coordinator
        self.adopt = adopt
        self.take_per_beat = take_per_beat
        self.state = state
        self._wait = 0.0

    def step(self) -> None:
        if self.stop_event.wait(min(self._wait, 1.0)):
            return
        self._wait -= min(self._wait, 1.0)
        if self._wait > 0:
            return
        try:
            taken = self.beat_once()
        except CoordinationUnavailable:
            self._wait = RETRY_SECONDS
            return
        # A full batch: more may be waiting (a host died with many files); take the next
        # soon, a few at a time, so the surviving hosts share them out.
        full = len(taken) >= self.take_per_beat
        self._wait = RETRY_SECONDS if full else self.coordinator.settings.heartbeat

    def beat_once(self) -> list[Claim]:
        """Renew, report, take over; returns the claims taken over."""
        coordinator = self.coordinator
        if not coordinator.start():
            raise CoordinationUnavailable("not registered yet")
        with coordinator.lease_db.use() as book:
            ours = book.renew_all()
            for lost in coordinator.renewed(ours):
                logger.warning("%s: another host took its claim over while our lease had "
                               "lapsed; it stands down before its next step",
                               display(os.fsdecode(lost.relpath)))
            down = coordinator.describe()
            book.host_beat(coordinator.instance, "paused" if down else self.state(), down)
            taken = book.take_expired(coordinator.shares.ids(), self.take_per_beat)
        if coordinator.db.down is not None:
            coordinator.db.probe()  # the workers' connection: their pause ends with it
        beat()
        for claim in taken:
            path = coordinator.shares.local_path(claim.share, claim.relpath)
            if path is None:
                continue
            logger.warning("%s: took the claim over from host %s (its lease ran out; phase "
                           "%s, takeover %d, epoch %d); continuing where it was",
                           display(str(path)), claim.previous, claim.phase, claim.takeovers,
                           claim.epoch)
            self.adopt(claim, path)
        return taken
