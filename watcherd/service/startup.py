"""The daemon's start, step by step: enter the cluster, open (or rebuild) the database,
turn pauses into webhook events, pick up the work the last run left, and say what is
watched.

Each step is a function of the parts it touches; ``Daemon.start`` runs them in order
and undoes the lot if any one fails.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import TYPE_CHECKING

from watcherd.config import Config
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses
from watcherd.ingest.putback import put_back
from watcherd.intake.settle import Hint
from watcherd.intake.watcher import Watcher
from watcherd.service.rebuild import move_aside, rebuild
from watcherd.state.states import State
from watcherd.state.store import CorruptDatabase, Store
from watcherd.webhooks.pauses import PauseEvents

if TYPE_CHECKING:
    from watcherd.cluster.coordinator import Coordinator

logger = logging.getLogger(__name__)


def make_coordinator(config: Config) -> Coordinator | None:
    """Several hosts (``coordination:``): the coordinator, not started yet (the daemon
    holds it first, so a failed start still closes it)."""
    if config.coordination is None:
        return None
    from watcherd.cluster.coordinator import Coordinator
    from watcherd.cluster.settings import read_dsn

    return Coordinator(config, read_dsn(config.coordination))


def open_store(store: Store, config: Config) -> None:
    try:
        store.open()
    except CorruptDatabase as exc:
        aside = move_aside(exc)
        logger.critical("state database %s is damaged (%s); moved it to %s and "
                        "rebuilding it from the folders and Twelve Labs", exc.path,
                        exc.detail, aside)
        store.open()
        finished, pending = rebuild(config, store)
        logger.warning("rebuilt state: %d finished file(s) from their sidecars; %d inbox "
                       "file(s) are checked with Twelve Labs before any upload",
                       finished, pending)


def tell_pauses(store: Store, config: Callable[[], Config], index_pauses: IndexPauses,
                gate: UploadGate) -> None:
    """Pauses become webhook events, once the outbox can take them (a pause found at
    start is told now)."""
    events = PauseEvents(store, config)
    index_pauses.listener = events.index
    gate.listen(events.account)


def recover(store: Store, intake: queue.SimpleQueue[Hint],
            to_finalize: queue.Queue[int]) -> None:
    """Pick up where the last run stopped (before any new upload)."""
    for record in store.in_states(State.QUEUED, State.VALIDATING, State.UPLOADING):
        # Hints for these are sent with the other settling rows below.
        put_back(store, record, "restart", settle_again=lambda _path: None,
                 finalize=to_finalize.put)
    for record in store.in_states(State.SETTLING):
        intake.put(Hint(record.path, "recovery"))
    for record in store.in_states(State.FINALIZING):
        to_finalize.put(record.id)


def log_started(watcher: Watcher, config: Config) -> None:
    for watch in watcher.watches:
        f = watch.folder
        logger.info("folder %s (%s%s) -> index %s, validating with %s; done: %s, "
                    "failed: %s", f.path, watch.mode, ", recursive" if f.recursive else "",
                    f.index_id, f.profile.describe(), f.done_dir, f.failed_dir)
    logger.info("watcherd started: watching %d folder(s), state in %s",
                len(config.folders), config.state_db)
