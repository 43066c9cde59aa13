"""The daemon's threads, each made by a factory the supervisor can call again.

Every factory reads the daemon's config and coordinator when it is called, so a thread
made after a reload (or after ``start`` made the coordinator) gets the settings of that
moment; the queues, gate, pauses and API client are the daemon's, shared by all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from watcherd.cluster.claims import Claim
from watcherd.ingest.clustersteps import IndexingFence
from watcherd.ingest.finalizer import Finalizer
from watcherd.ingest.pausecheck import PauseCheck
from watcherd.ingest.poller import Poller
from watcherd.ingest.takeover import adopt
from watcherd.ingest.upload import UploadWorker
from watcherd.intake.settle import Hint, Settler
from watcherd.threads import ServiceThread
from watcherd.webhooks.delivery import WebhookSender

if TYPE_CHECKING:
    from watcherd.service.daemon import Daemon


def thread_factories(d: Daemon) -> dict[str, Callable[[], ServiceThread]]:
    """One factory per thread name: the settler, poller, finalizer, pause check, webhooks,
    each upload worker, and with ``coordination`` the cluster's lease keeper."""
    factories: dict[str, Callable[[], ServiceThread]] = {
        "settler": lambda: Settler(config=d.config, store=d.store, intake=d.intake,
                                   release=d.work.put),
        "poller": lambda: Poller(store=d.store, api=d.api, gate=d.gate,
                                 finalize=d.to_finalize.put,
                                 interval=d.config.poll_interval_seconds,
                                 task_timeout=d.config.task_timeout_seconds,
                                 batch=d.config.poll_batch,
                                 index_pauses=d.index_pauses,
                                 internal_errors=d.internal_errors,
                                 assets=d.assets,
                                 cluster=IndexingFence(d.coordinator, d.store)
                                 if d.coordinator else None),
        "finalizer": lambda: Finalizer(config=d.config, store=d.store,
                                       work=d.to_finalize,
                                       internal_errors=d.internal_errors,
                                       coordinator=d.coordinator),
        "pause-check": lambda: PauseCheck(config=d.config, api=d.api, gate=d.gate,
                                          index_pauses=d.index_pauses,
                                          paths=d.paths,
                                          release=d.work.put, wake=d.pause_wake),
        "webhooks": lambda: WebhookSender(config=d.config, store=d.store,
                                          totals=d.webhook_totals),
    }
    for n in range(1, d.config.upload_workers + 1):
        factories[f"upload-{n}"] = _upload_factory(d, f"upload-{n}")
    if d.config.coordination is not None:
        factories["cluster"] = lambda: _lease_keeper(d)
    return factories


def _lease_keeper(d: Daemon) -> ServiceThread:
    from watcherd.cluster.lease import LeaseKeeper

    assert d.coordinator is not None

    def take_over(claim: Claim, path: Path) -> None:
        adopt(d.store, d.config, claim, path, d.work.put)
        d.intake.put(Hint(str(path), "recovery"))  # the settler holds it no longer

    return LeaseKeeper(d.coordinator, take_over,
                       take_per_beat=2 * d.config.upload_workers + 8)


def _upload_factory(d: Daemon, name: str) -> Callable[[], UploadWorker]:
    return lambda: UploadWorker(
        name, config=d.config, store=d.store, api=d.api, gate=d.gate,
        work=d.work, finalize=d.to_finalize.put,
        settle_again=d.settle_again, progress=d.progress,
        index_pauses=d.index_pauses, internal_errors=d.internal_errors,
        coordinator=d.coordinator,
        hold_elsewhere=lambda path: d.intake.put(Hint(path, "elsewhere")),
        paths=d.paths, assets=d.assets, connections=d.chunk_connections)
