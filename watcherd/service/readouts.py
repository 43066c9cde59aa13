"""What others read from the daemon's parts: the gauges a metrics scrape reads, the
runtime snapshot published for the CLI, and how many files wait for other hosts (for
the STATUS line). Each reads the daemon at the moment it is asked, so a thread or a
config replaced since start is the one described."""

from __future__ import annotations

from typing import TYPE_CHECKING

from watcherd.intake.settle import Settler
from watcherd.service.metrics import DaemonGauges
from watcherd.service.runtime import build_snapshot
from watcherd.state.outbox import Outbox

if TYPE_CHECKING:
    from watcherd.service.daemon import Daemon


def daemon_gauges(d: Daemon) -> DaemonGauges:
    """What a scrape reads from the daemon's parts (metrics counts the rest)."""
    return DaemonGauges(
        store=d.store, gate=d.gate, index_pauses=d.index_pauses,
        watcher=d.watcher, verdict=d.monitor.verdict,
        queues={"intake": d.intake.qsize, "upload": d.work.qsize,
                "finalize": d.to_finalize.qsize,
                "parked": lambda: len(d.index_pauses.parked())},
        folders=lambda: [f.path for f in (*d.config.folders, *d.config.retired)],
        webhook_totals=lambda: d.webhook_totals,
        outbox_counts=Outbox(d.store).counts)


def publish_runtime(d: Daemon, problems: list[str]) -> None:
    d.store.publish_runtime(build_snapshot(
        watcher=d.watcher, scanner=d.scanner, progress=d.progress, gate=d.gate,
        problems=problems, started_at=d.started_at,
        index_pauses=d.index_pauses.paused(), upload_paths=d.paths.snapshot()))


def held_for_other_hosts(d: Daemon) -> int:
    settler = d.threads.get("settler")
    return settler.held_count() if isinstance(settler, Settler) else 0
